"""FunkSVD's kernels: the mini-batch SGD step, batched ridge regressions, and the trainer.

Pure functions on tensors (shape contracts in their docstrings) and one class,
:class:`FunkTrainer`, holding the tensors of one fit with one epoch function
per solver (SGD, Adam, ALS on the observed ratings, weighted ALS on every
entry). :class:`sksvd.recommenders.funksvd.FunkSVD` is the scikit-learn glue
around them; the fit skeleton shared with AsySVD is in
:mod:`sksvd.recommenders._sgd_base`.
"""

from __future__ import annotations

import numpy as np
import torch

from .._backend import make_generator
from .._optim import Adam
from ..distributed import allreduce_, allreduce_values, owned_rows, rank_seed

__all__ = ["RIDGE_BLOCK", "FunkTrainer", "plan_rows", "ridge_operands", "ridge_rows",
           "sgd_step_"]

# Elements (rows x padded length x width) of one batch of ridge problems.
RIDGE_BLOCK = {"cpu": 2**21, "cuda": 2**25}


def sgd_step_(target_p, target_q, pa, qa, users, items, y, lr, decay_p, decay_q,
               scale_u=None, scale_i=None):
    """Add ``-lr`` times the gradient of a mini-batch's loss to ``target_p``, ``target_q``.

    The factors are stored augmented, ``pa = [P | b_u | 1]`` and
    ``qa = [Q | 1 | b_i]``, so that ``mu + b_u + b_i + p_u . q_i`` is
    ``mu + pa[u] . qa[i]``. For the mini-batch ``B`` of (user, item, y) with
    ``y = r - mu`` the loss is

        L_B = 1/2 sum_{(u,i) in B} [ (y - pa[u] . qa[i])**2
                                     + sum_c reg_p[c] pa[u,c]**2 + reg_q[c] qa[i,c]**2 ]

    and its gradient rows are gathered per rating and summed into the targets
    with ``index_add_`` (one call per side, no loop per rating); the constant
    columns get no update.

    Parameters
    ----------
    target_p, target_q : Tensor (n_users, K), (n_items, K)
        Receive ``-lr * dL_B/dpa`` and ``-lr * dL_B/dqa``; pass ``pa``/``qa``
        themselves for an SGD step, zeroed buffers and ``lr=-1`` for the
        gradient.
    pa, qa : Tensor (n_users, K), (n_items, K), K = n_components + 2
    users, items : int Tensor (B,)
    y : Tensor (B,)
        Ratings minus the global mean.
    lr : float
    decay_p, decay_q : Tensor (K,)
        ``-lr * reg_p`` and ``-lr * reg_q`` (zero on the constant column).
    scale_u, scale_i : Tensor (n_users,), (n_items,), optional
        Per-row multipliers of the step (large-batch safeguard).

    Returns
    -------
    err : Tensor (B,)
        ``y - pa[u] . qa[i]`` before the step.
    """
    pu = pa.index_select(0, users)
    qi = qa.index_select(0, items)
    err = y - (pu * qi).sum(1)
    el = (err * lr).unsqueeze(1)
    step_p = pu.mul(decay_p).addcmul_(el, qi)
    step_p[:, -1] = 0
    step_q = qi.mul_(decay_q).addcmul_(el, pu)
    step_q[:, -2] = 0
    if scale_u is not None:
        step_p.mul_(scale_u.index_select(0, users).unsqueeze(1))
        step_q.mul_(scale_i.index_select(0, items).unsqueeze(1))
    target_p.index_add_(0, users, step_p)
    target_q.index_add_(0, items, step_q)
    return err


def plan_rows(lengths, block):
    """Group rows with at least one entry, shortest first, into padded blocks.

    Returns a list of ``(rows, max_length)`` with ``len(rows) * max_length <= block``
    (or a single row when one row alone is longer than ``block``).
    """
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    sorted_len = lengths[order]
    plan, start, n = [], 0, order.size
    while start < n:
        stop = min(n, start + block)
        cost = np.arange(1, stop - start + 1) * sorted_len[start:stop]
        count = max(1, int(np.searchsorted(cost, block, side="right")))
        plan.append((order[start:start + count], int(sorted_len[start + count - 1])))
        start += count
    return plan


def ridge_operands(M, k, device, dtype, shift=0.0):
    """The CSR ``M`` as :func:`ridge_rows` takes it, for ``k``-factor models on ``device``.

    Returns ``(indptr, indices, y, plan)``: the structure as int64 tensors,
    the stored values minus ``shift`` in ``dtype``, and the row plan of
    :func:`plan_rows` in blocks of ``RIDGE_BLOCK[device.type]`` elements.
    """
    block = max(1, RIDGE_BLOCK.get(device.type, 2**21) // (k + 1))
    return (torch.from_numpy(M.indptr.astype(np.int64)).to(device),
            torch.from_numpy(M.indices.astype(np.int64)).to(device),
            torch.from_numpy(M.data).to(device=device, dtype=dtype) - shift,
            plan_rows(np.diff(M.indptr), block))


def ridge_rows(indptr, indices, y, feats, offsets, reg, plan, out, append_one=False,
                gram=None, unobserved_weight=0.0):
    """Per-row ridge regressions on a CSR matrix's stored entries, batched.

    For each planned row ``u`` with entries ``(j, y_uj)`` this solves

        z_u = argmin_z  sum_j (y_uj - offsets[j] - z . f_j)**2 + n_u * sum_c reg[c] z_c**2

    (``f_j = feats[j]``, or ``[feats[j], 1]`` with ``append_one``; ``n_u``:
    the row's number of entries, so the penalty matches the per-rating
    regularisation of the training loss), by a Cholesky solve of the
    ``K x K`` normal equations in float64.

    With ``gram = sum_j f_j f_j^T`` over *all* columns (a float64 ``K x K``
    tensor) the row's missing entries count too, as zeros of weight
    ``w0 = unobserved_weight`` (weighted matrix factorisation):

        z_u = argmin_z  sum_{j stored} (y_uj - z . f_j)**2
                        + w0 sum_{j not stored} (z . f_j)**2 + m_u sum_c reg[c] z_c**2,

    whose normal matrix is ``(1 - w0) F_u^T F_u + w0 gram + m_u diag(reg)``,
    with ``m_u = n_u + w0 (n_cols - n_u)`` the row's total weight (the
    frequency-scaled penalty of Rendle et al. 2022, which reduces to the
    ``n_u`` above when ``w0 = 0``). Rows without entries, whose solution is
    zero, are still left untouched. Rows are padded to the longest row
    of their block (padded places are zeroed, so they add nothing); the Gram
    matrices come from one ``bmm`` per block. Only the gathered rows of
    ``feats`` are converted, so a call costs O(entries x K), not O(n_cols):
    ``recommend`` calls it once per small batch of users. Rows not in the
    plan (no entries) are left untouched in ``out``.

    Parameters
    ----------
    indptr, indices : int64 Tensor
        CSR structure on the device.
    y : Tensor (nnz,)
        Stored values (already minus the global mean).
    feats : Tensor (n_cols, K) or (n_cols, K - 1) with ``append_one``
    offsets : Tensor (n_cols,)
    reg : Tensor (K,)
    plan : list from :func:`plan_rows`
    out : Tensor (n_rows, K)
        Written in place at the planned rows.
    append_one : bool, default=False
        Append a constant feature 1 (the bias) to the gathered ``feats``.
    """
    device = feats.device
    f64 = torch.float64
    reg64 = reg.to(f64)
    K = reg.shape[0]
    for rows_np, length in plan:
        # index_select throughout: several times faster than advanced indexing on CPU
        rows = torch.from_numpy(rows_np).to(device)
        start = indptr.index_select(0, rows).long()
        count = indptr.index_select(0, rows + 1).long() - start
        ar = torch.arange(length, device=device)
        pad = ar >= count.unsqueeze(1)
        # padded places read entry 0 (any valid one) and are zeroed below
        pos = (start.unsqueeze(1) + ar).masked_fill_(pad, 0).view(-1)
        keep = (~pad).view(-1, 1).to(f64)
        cols = indices.index_select(0, pos).long()
        G = feats.index_select(0, cols).to(f64)
        if append_one:
            G = torch.cat([G, torch.ones(G.shape[0], 1, dtype=f64, device=device)], 1)
        G = G.mul_(keep).view(-1, length, K)
        Gt = G.transpose(1, 2)
        A = torch.bmm(Gt, G)
        if gram is None:
            A.diagonal(dim1=1, dim2=2).add_(count.to(f64).unsqueeze(1) * reg64)
        else:
            w0 = unobserved_weight
            A.mul_(1.0 - w0).add_(gram * w0)
            weight = count.to(f64) * (1.0 - w0) + w0 * feats.shape[0]
            A.diagonal(dim1=1, dim2=2).add_(weight.unsqueeze(1) * reg64)
        target = (y.index_select(0, pos).to(f64) - offsets.index_select(0, cols).to(f64))
        rhs = torch.bmm(Gt, target.mul_(keep.view(-1)).view(-1, length, 1))
        chol, info = torch.linalg.cholesky_ex(A)
        z = torch.cholesky_solve(rhs, chol).squeeze(2)
        bad = info != 0
        if bool(bad.any()):  # singular (no regularisation, fewer ratings than factors)
            z[bad] = (torch.linalg.pinv(A[bad]) @ rhs[bad]).squeeze(2)
        out.index_copy_(0, rows, z.to(out.dtype))
    return out


class FunkTrainer:
    """The tensors of one FunkSVD fit and its epoch function.

    The factors are stored augmented, ``pa = [P | b_u | 1]`` (n_users, k + 2)
    and ``qa = [Q | 1 | b_i]`` (n_items, k + 2) (see :func:`sgd_step_`);
    ``epoch(e) -> float`` runs one epoch of ``solver`` and returns the
    objective per training entry. ``start = (pa0, qa0)`` continues from
    fitted parameters (warm start, ``partial_fit``): the first rows of
    ``pa``/``qa`` start there, new rows as in a fresh fit. With ``dist``
    (data-parallel), ``X`` holds this rank's users only; the counts, the item
    updates and the loss are summed over the ranks, and every rank takes
    ``ceil(n_all / batch_size)`` steps per epoch.

    Parameters
    ----------
    X, X_val : scipy.sparse.csr_matrix (n_users, n_items), X_val or None
        Training and held-out ratings (``X_val`` for :attr:`validate`).
    solver : {"sgd", "adam", "als", "wmf"}
        "wmf": weighted ALS over every entry (``unobserved_weight`` given).
    mu : float
        The global mean subtracted from the ratings (0 for "wmf").
    unobserved_weight : float or None
        ``w0`` of the all-entries loss; None for the observed ratings only.
    seed : int
        Seeds the initial factors and the shuffles (per rank with ``dist``).
    """

    def __init__(self, X, X_val, *, solver, n_components, learning_rate, learning_rate_decay,
                 batch_size, regularization, reg_bias, init_std, unobserved_weight, mu,
                 device, dtype, seed, start=None, dist=False):
        k = n_components
        gen = make_generator(seed, device)
        self.k, self.device, self.dtype, self.gen = k, device, dtype, gen
        self.lr = float(learning_rate)
        self.lr_decay = float(learning_rate_decay)
        self.batch_size = int(batch_size)
        reg = float(regularization)
        reg_b = reg if reg_bias is None else float(reg_bias)
        n_users, n_items = X.shape
        coo = X.tocoo()
        idx = torch.int64  # index_add_ is several times slower with int32 indices on CPU
        self.users = torch.from_numpy(coo.row).to(device=device, dtype=idx)
        self.items = torch.from_numpy(coo.col).to(device=device, dtype=idx)
        self.dist = dist
        self.n = coo.nnz
        self.unobserved_weight = unobserved_weight
        self.mu = float(mu)
        self.y = torch.from_numpy(coo.data).to(device=device, dtype=dtype) - self.mu
        n_u = np.bincount(coo.row, minlength=n_users)
        n_i = np.bincount(coo.col, minlength=n_items)
        # Global counts: this rank's n_u is exact for its own users; items need the sum.
        n_i_all, self.n_all, n_u_max = n_i, self.n, n_u.max(initial=0)
        if dist:
            n_i_all = allreduce_(torch.from_numpy(n_i.astype(np.int64))).numpy()
            self.n_all = int(allreduce_values([self.n])[0])
            n_u_max = allreduce_values([n_u_max], op="max")[0]
        self.n_u = torch.from_numpy(n_u).to(device=device, dtype=dtype)
        self.n_i = torch.from_numpy(n_i).to(device=device, dtype=dtype)

        K = k + 2
        std = float(init_std)
        pa = torch.randn(n_users, K, generator=gen, device=device, dtype=dtype) * std
        qa = torch.randn(n_items, K, generator=gen, device=device, dtype=dtype) * std
        pa[:, k], pa[:, k + 1] = 0.0, 1.0
        qa[:, k], qa[:, k + 1] = 1.0, 0.0
        pa[self.n_u == 0, :k + 1] = 0.0  # rows never rated stay at zero
        unrated = torch.from_numpy(n_i_all == 0).to(device)
        qa[unrated, :k] = 0.0
        qa[unrated, k + 1] = 0.0
        if start is not None:  # fitted rows continue from where they were (copied)
            pa[:start[0].shape[0]] = torch.as_tensor(start[0]).to(device=device, dtype=dtype)
            qa[:start[1].shape[0]] = torch.as_tensor(start[1]).to(device=device, dtype=dtype)
        self.pa, self.qa = pa, qa
        if dist:  # same initialisation on every rank, then each rank its own shuffles
            self.gen = make_generator(rank_seed(seed), device)
        self.reg_p = torch.full((K,), reg, device=device, dtype=dtype)
        self.reg_p[k], self.reg_p[k + 1] = reg_b, 0.0
        self.reg_q = torch.full((K,), reg, device=device, dtype=dtype)
        self.reg_q[k], self.reg_q[k + 1] = 0.0, reg_b

        # A row expected more than 1/lr times in one mini-batch would take a
        # stale summed step too long to be stable; shrink its step to that bound.
        self.scale_u = self.scale_i = None
        frac = min(1.0, self.batch_size / max(self.n_all, 1))
        if self.lr * frac * max(n_u_max, n_i_all.max(initial=0)) > 1.0:
            self.scale_u = 1.0 / torch.clamp(self.lr * frac * self.n_u, min=1.0)
            n_i_t = torch.from_numpy(n_i_all).to(device=device, dtype=dtype)
            self.scale_i = 1.0 / torch.clamp(self.lr * frac * n_i_t, min=1.0)

        self.val = None
        if X_val is not None and (X_val.nnz or dist):  # every rank validates, even if empty
            vc = X_val.tocoo()
            self.val = (torch.from_numpy(vc.row).to(device=device, dtype=idx),
                        torch.from_numpy(vc.col).to(device=device, dtype=idx),
                        torch.from_numpy(vc.data).to(device=device, dtype=dtype) - self.mu)
        self._X = X
        self._als = None
        self.optimizer = None
        if solver == "adam":
            self.optimizer = Adam({"pa": self.pa, "qa": self.qa}, self.lr)
            self._grads = {"pa": torch.zeros_like(self.pa), "qa": torch.zeros_like(self.qa)}
        self.epoch = {"sgd": self.sgd_epoch, "adam": self.adam_epoch, "als": self.als_epoch,
                      "wmf": self.wmf_epoch}[solver]
        self.validate = self._validate if self.val is not None else None
        self.higher_is_better = False

    # -------------------------------------------------------------- shared
    def reg_term(self):
        """sum over ratings of the penalties: sum_u n_u reg_p.pa[u]**2 + sum_i n_i reg_q.qa[i]**2."""
        rp = (self.pa.square() @ self.reg_p) @ self.n_u
        rq = (self.qa.square() @ self.reg_q) @ self.n_i
        return float(rp + rq)

    def _residuals_sq(self, users, items, y, chunk=2**20):
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for s in range(0, y.shape[0], chunk):
            pu = self.pa.index_select(0, users[s:s + chunk])
            qi = self.qa.index_select(0, items[s:s + chunk])
            e = y[s:s + chunk] - (pu * qi).sum(1)
            total += e.double().square().sum()
        return float(total)

    def _validate(self):
        """RMSE of the held-out ratings (summed over the ranks)."""
        users, items, y = self.val
        sq, count = self._residuals_sq(users, items, y), y.shape[0]
        if self.dist:
            sq, count = allreduce_values([sq, count])
        return (sq / count) ** 0.5

    def _steps(self):
        """(start, stop) of each mini-batch in this rank's shuffled ratings.

        Data-parallel, every rank takes ``ceil(n_all / batch_size)`` steps of
        about ``batch_size / world_size`` ratings (a slice may be empty), so
        that a step's summed update is that of a ``batch_size`` mini-batch.
        """
        B = self.batch_size
        if not self.dist:
            return [(s, s + B) for s in range(0, self.n, B)]
        steps = max(1, -(-self.n_all // B))
        b = -(-self.n // steps)
        return [(i * b, (i + 1) * b) for i in range(steps)]

    def _epoch_loss(self, sq):
        total = float(sq) + self.reg_term()
        if self.dist:
            total = float(allreduce_values([total])[0])
        return total / self.n_all

    def finish(self):
        """Data-parallel: every rank gets every user's row of ``pa`` (from its owner)."""
        if self.dist:
            own = torch.from_numpy(owned_rows(self.pa.shape[0])).to(self.device)
            self.pa[~own] = 0.0
            allreduce_(self.pa)

    def snapshot(self):
        return self.pa.clone(), self.qa.clone()

    def restore(self, state):
        self.pa.copy_(state[0])
        self.qa.copy_(state[1])

    def epoch_lr(self, epoch):
        """The step size of this call's epoch ``epoch`` (0-based): ``lr * decay**epoch``."""
        return self.lr * self.lr_decay ** epoch

    def _shuffled(self):
        perm = torch.randperm(self.n, generator=self.gen, device=self.device)
        # index_select: several times faster than advanced indexing on CPU
        return (self.users.index_select(0, perm), self.items.index_select(0, perm),
                self.y.index_select(0, perm))

    # -------------------------------------------------------------- solvers
    def sgd_epoch(self, epoch):
        users, items, y = self._shuffled()
        lr = self.epoch_lr(epoch)
        decay_p, decay_q = -lr * self.reg_p, -lr * self.reg_q
        sq = torch.zeros((), dtype=torch.float64, device=self.device)
        # Data-parallel: own users' rows are updated in place, the item step is summed.
        step_q = torch.zeros_like(self.qa) if self.dist else self.qa
        for s, e in self._steps():
            if self.dist:
                step_q.zero_()
            err = sgd_step_(self.pa, step_q, self.pa, self.qa, users[s:e],
                             items[s:e], y[s:e], lr, decay_p, decay_q,
                             self.scale_u, self.scale_i)
            if self.dist:
                self.qa += allreduce_(step_q)
            sq += err.dot(err)
        return self._epoch_loss(sq)

    def adam_epoch(self, epoch):
        """One epoch of the mini-batch gradients of :meth:`sgd_epoch` with dense Adam steps."""
        opt, grads = self.optimizer, self._grads
        gp, gq = grads["pa"], grads["qa"]
        opt.lr = self.epoch_lr(epoch)
        users, items, y = self._shuffled()
        sq = torch.zeros((), dtype=torch.float64, device=self.device)
        for s, e in self._steps():
            gp.zero_()
            gq.zero_()
            # lr = -1 turns the step into the gradient itself.
            err = sgd_step_(gp, gq, self.pa, self.qa, users[s:e], items[s:e],
                            y[s:e], -1.0, self.reg_p, self.reg_q)
            if self.dist:
                allreduce_(gq)  # users' gradients stay on their own rank
            sq += err.dot(err)
            opt.step(grads)
        return self._epoch_loss(sq)

    def _side(self, M):
        """One side's CSR structure on the device, its values minus ``mu``, its row plan."""
        return ridge_operands(M, self.k, self.device, self.dtype, self.mu)

    def als_epoch(self, epoch):
        k, dev = self.k, self.device
        if self._als is None:
            self._als = tuple(self._side(M) for M in (self._X, self._X.T.tocsr()))
        (u_ptr, u_idx, u_y, u_plan), (i_ptr, i_idx, i_y, i_plan) = self._als
        cols_p = torch.cat([torch.arange(k, device=dev), torch.tensor([k + 1], device=dev)])
        cols_q = cols_p  # [factors, b_i] in qa and [factors, 1] in pa share positions
        # users given items: features [q_i, 1] = qa[:, :k+1], offsets b_i
        z = self.pa[:, :k + 1].clone()
        ridge_rows(u_ptr, u_idx, u_y, self.qa[:, :k + 1], self.qa[:, k + 1],
                    self.reg_p[:k + 1], u_plan, z)
        self.pa[:, :k + 1] = z
        # items given users: features [p_u, 1] = pa[:, cols_p], offsets b_u
        z = self.qa[:, cols_q].clone()
        ridge_rows(i_ptr, i_idx, i_y, self.pa[:, cols_p], self.pa[:, k],
                    self.reg_q[cols_q], i_plan, z)
        self.qa[:, cols_q] = z
        sq = self._residuals_sq(self.users, self.items, self.y)
        return (sq + self.reg_term()) / self.n

    def wmf_epoch(self, epoch):
        """One sweep of weighted ALS over every entry (``loss="mse_all"``).

        Users, then items, are solved in closed form with the other side
        fixed (:func:`ridge_rows` with the Gram matrix of all the fixed
        side's factors): stored entries weigh 1, missing ones count as zeros
        of weight ``w0``, and each factor vector pays ``regularization``
        times its row's total weight (Hu, Koren and Volinsky 2008; Pan et al.
        2008; Rendle et al. 2022). The bias columns stay zero. Returns the
        objective per stored entry.
        """
        k, w0 = self.k, self.unobserved_weight
        if self._als is None:
            self._als = tuple(self._side(M) for M in (self._X, self._X.T.tocsr()))
        reg = self.reg_p[:k]
        for (ptr, idx, y, plan), mine, other in ((self._als[0], self.pa, self.qa),
                                                (self._als[1], self.qa, self.pa)):
            F = other[:, :k]
            gram = F.T.to(torch.float64) @ F.to(torch.float64)
            z = mine[:, :k].clone()
            ridge_rows(ptr, idx, y, F, self._zeros(other.shape[0]), reg, plan, z,
                        gram=gram, unobserved_weight=w0)
            mine[:, :k] = z
        P, Q = self.pa[:, :k].double(), self.qa[:, :k].double()
        sq = self._residuals_sq(self.users, self.items, self.y)
        pred_sq = self._residuals_sq(self.users, self.items, torch.zeros_like(self.y))
        # all entries' squared predictions: trace((P^T P)(Q^T Q))
        zeros = float(((P.T @ P) * (Q.T @ Q)).sum()) - pred_sq
        n_users, n_items = P.shape[0], Q.shape[0]
        m_u = self.n_u.double() * (1.0 - w0) + w0 * n_items
        m_i = self.n_i.double() * (1.0 - w0) + w0 * n_users
        penalty = float((m_u @ P.square() + m_i @ Q.square()) @ reg.double())
        return (sq + w0 * zeros + penalty) / self.n

    def _zeros(self, n):
        return torch.zeros(n, dtype=self.dtype, device=self.device)

