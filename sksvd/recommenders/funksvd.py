"""FunkSVD: biased matrix factorisation trained on the observed ratings only."""

from __future__ import annotations

import contextlib
import numbers

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from .._backend import (
    device_array,
    make_generator,
    numpy_dtype,
    seed_from_random_state,
    to_numpy,
)
from ..distributed import (
    allreduce_,
    allreduce_values,
    get_rank,
    owned_rows,
    rank_seed,
    resolve_distributed,
    shard_rows,
)
from ._base import BaseRecommender
from ._incremental import call_seed, check_growing_interactions, grow
from ._training import run_epochs, validation_split

__all__ = ["FunkSVD"]

# Elements (rows x padded length x width) of one batch of ridge problems.
_RIDGE_BLOCK = {"cpu": 2**21, "cuda": 2**25}
# Below this many elements per mini-batch tensor, CPU ops run faster on one thread
# (2 threads spend more on synchronisation than they gain, worse on a busy machine).
_SERIAL_ELEMENTS = 2**22


# ----------------------------------------------------------------------------- kernels
def _sgd_step_(target_p, target_q, pa, qa, users, items, y, lr, decay_p, decay_q,
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


def _plan_rows(lengths, block):
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


def _ridge_rows(indptr, indices, y, feats, offsets, reg, plan, out, append_one=False,
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
    plan : list from :func:`_plan_rows`
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


@contextlib.contextmanager
def _threads_for(device, elements):
    """Run small CPU mini-batch ops on one thread (fewer stalls), restoring the setting."""
    old = torch.get_num_threads()
    if device.type != "cpu" or elements >= _SERIAL_ELEMENTS or old == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------- trainer
class _Trainer:
    """The tensors of one fit and one epoch function per solver.

    ``start = (pa0, qa0, mu)`` continues from fitted parameters (warm start,
    ``partial_fit``): the first rows of ``pa``/``qa`` start there, new rows as
    in a fresh fit. With ``dist`` (data-parallel), ``X`` holds this rank's
    users only; the counts, the mean, the item updates and the loss are
    summed over the ranks, and every rank takes ``ceil(n_all / batch_size)``
    steps per epoch.
    """

    def __init__(self, est, X, X_val, device, dtype, gen, start=None, dist=False, seed=0):
        k = est.n_components
        self.k, self.device, self.dtype, self.gen = k, device, dtype, gen
        self.lr = float(est.learning_rate)
        self.lr_decay = float(est.learning_rate_decay)
        self.batch_size = int(est.batch_size)
        reg = float(est.regularization)
        reg_b = reg if est.reg_bias is None else float(est.reg_bias)
        n_users, n_items = X.shape
        coo = X.tocoo()
        idx = torch.int64  # index_add_ is several times slower with int32 indices on CPU
        self.users = torch.from_numpy(coo.row).to(device=device, dtype=idx)
        self.items = torch.from_numpy(coo.col).to(device=device, dtype=idx)
        self.dist = dist
        self.n = coo.nnz
        self.unobserved_weight = None
        if est.loss == "mse_all":  # no mean, no biases: missing entries are zeros
            self.unobserved_weight = float(est.unobserved_weight)
            self.mu = 0.0
        elif start is not None:
            self.mu = float(start[2])
        elif dist:
            total, count = allreduce_values([np.sum(coo.data, dtype=np.float64), self.n])
            self.mu = float(total / count)
        else:
            self.mu = float(np.mean(coo.data, dtype=np.float64))
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
        std = float(est.init_std)
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
        self._adam = None
        self.adam_start = None  # Adam's state to continue from (partial_fit, warm start)
        self._als = None

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

    def validate(self):
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

    def gather_users(self):
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
            err = _sgd_step_(self.pa, step_q, self.pa, self.qa, users[s:e],
                             items[s:e], y[s:e], lr, decay_p, decay_q,
                             self.scale_u, self.scale_i)
            if self.dist:
                self.qa += allreduce_(step_q)
            sq += err.dot(err)
        return self._epoch_loss(sq)

    def adam_epoch(self, epoch, beta1=0.9, beta2=0.999, eps=1e-8):
        if self._adam is None:
            self._adam = {"t": 0, "gp": torch.zeros_like(self.pa),
                          "gq": torch.zeros_like(self.qa),
                          "m": [torch.zeros_like(self.pa), torch.zeros_like(self.qa)],
                          "v": [torch.zeros_like(self.pa), torch.zeros_like(self.qa)]}
            if self.adam_start is not None:  # continue: rows past the old ones start at 0
                self._adam["t"] = int(self.adam_start["t"])
                for name in ("m", "v"):
                    for t, old in zip(self._adam[name], self.adam_start[name], strict=True):
                        t[:old.shape[0]] = torch.as_tensor(old).to(device=t.device,
                                                                   dtype=t.dtype)
        st = self._adam
        gp, gq = st["gp"], st["gq"]
        lr = self.epoch_lr(epoch)
        users, items, y = self._shuffled()
        sq = torch.zeros((), dtype=torch.float64, device=self.device)
        for s, e in self._steps():
            gp.zero_()
            gq.zero_()
            # lr = -1 turns the step into the gradient itself.
            err = _sgd_step_(gp, gq, self.pa, self.qa, users[s:e], items[s:e],
                             y[s:e], -1.0, self.reg_p, self.reg_q)
            if self.dist:
                allreduce_(gq)  # users' gradients stay on their own rank
            sq += err.dot(err)
            st["t"] += 1
            bc1 = 1.0 - beta1 ** st["t"]
            bc2 = 1.0 - beta2 ** st["t"]
            for param, g, m, v in ((self.pa, gp, st["m"][0], st["v"][0]),
                                   (self.qa, gq, st["m"][1], st["v"][1])):
                m.mul_(beta1).add_(g, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                denom = v.div(bc2).sqrt_().add_(eps)
                param.addcdiv_(m, denom, value=-lr / bc1)
        return self._epoch_loss(sq)

    def _side(self, M):
        """One side's CSR structure on the device, its values minus ``mu``, its row plan."""
        dev = self.device
        block = max(1, _RIDGE_BLOCK.get(dev.type, 2**21) // (self.k + 1))
        return (torch.from_numpy(M.indptr.astype(np.int64)).to(dev),
                torch.from_numpy(M.indices.astype(np.int64)).to(dev),
                torch.from_numpy(M.data).to(device=dev, dtype=self.dtype) - self.mu,
                _plan_rows(np.diff(M.indptr), block))

    def als_epoch(self, epoch):
        k, dev = self.k, self.device
        if self._als is None:
            self._als = tuple(self._side(M) for M in (self._X, self._X.T.tocsr()))
        (u_ptr, u_idx, u_y, u_plan), (i_ptr, i_idx, i_y, i_plan) = self._als
        cols_p = torch.cat([torch.arange(k, device=dev), torch.tensor([k + 1], device=dev)])
        cols_q = cols_p  # [factors, b_i] in qa and [factors, 1] in pa share positions
        # users given items: features [q_i, 1] = qa[:, :k+1], offsets b_i
        z = self.pa[:, :k + 1].clone()
        _ridge_rows(u_ptr, u_idx, u_y, self.qa[:, :k + 1], self.qa[:, k + 1],
                    self.reg_p[:k + 1], u_plan, z)
        self.pa[:, :k + 1] = z
        # items given users: features [p_u, 1] = pa[:, cols_p], offsets b_u
        z = self.qa[:, cols_q].clone()
        _ridge_rows(i_ptr, i_idx, i_y, self.pa[:, cols_p], self.pa[:, k],
                    self.reg_q[cols_q], i_plan, z)
        self.qa[:, cols_q] = z
        sq = self._residuals_sq(self.users, self.items, self.y)
        return (sq + self.reg_term()) / self.n

    def wmf_epoch(self, epoch):
        """One sweep of weighted ALS over every entry (``loss="mse_all"``).

        Users, then items, are solved in closed form with the other side
        fixed (:func:`_ridge_rows` with the Gram matrix of all the fixed
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
            _ridge_rows(ptr, idx, y, F, self._zeros(other.shape[0]), reg, plan, z,
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


# ----------------------------------------------------------------------------- estimator
class FunkSVD(BaseRecommender):
    """Matrix factorisation: for top-N lists over every entry, or Funk's on the ratings.

    Two objectives, chosen by ``loss``.

    ``loss="mse_all"`` (the default, for top-N lists): weighted matrix
    factorisation over *every* entry of ``X``, the missing ones as zeros of
    weight ``w0 = unobserved_weight`` (Hu, Koren and Volinsky, ICDM 2008;
    Pan et al., ICDM 2008; with the frequency-scaled penalty of Rendle et
    al., "Revisiting the performance of iALS on item recommendation
    benchmarks", RecSys 2022):

        J = sum_{(u,i) stored} (r_ui - p_u . q_i)**2 + w0 sum_{(u,i) missing} (p_u . q_i)**2
            + lambda sum_u m_u |p_u|**2 + lambda sum_i m_i |q_i|**2,

    ``m_u = n_u + w0 (n_items - n_u)`` the total weight of user ``u``'s terms
    (``m_i`` likewise), so ``regularization`` means a penalty per unit of
    weight for both losses. It is solved by alternating least squares
    (``solver="auto"``): each sweep solves every user in closed form with
    the items fixed, then every item, as batched ridge regressions in torch
    whose normal matrices share the Gram matrix of the fixed side; the cost
    of a sweep grows with the stored entries, not with the missing ones.
    There are no biases (``user_bias_``, ``item_bias_`` and ``global_mean_``
    are zero), the scores ``p_u . q_i`` rank items and are not ratings
    (``predict_ratings`` refuses them), and new users are folded in by the
    same weighted ridge regression. The defaults (``n_components=32``,
    ``regularization=0.06``, ``unobserved_weight=0.25``, 12 sweeps) were
    chosen on validation splits (20% of each user's training ratings held
    out, those rated >= 4 relevant, NDCG@10) of MovieLens 100K ``u1.base``
    and ``u2.base`` and of an 80% part of MovieLens latest-small.

    Tuning for top-N lists, a grid of 12 points for ``GridSearchCV`` with
    :func:`sksvd.model_selection.make_topk_scorer` on the training matrix:
    ``{"n_components": [32, 64], "regularization": [0.03, 0.06],
    "unobserved_weight": [0.1, 0.25, 0.5]}`` (``benchmarks/bench_topn.py``).

    ``loss="mse"`` (for ratings): Funk's biased factorisation on the
    observed ratings only. A rating is predicted as

        r_hat(u, i) = mu + b_u + b_i + p_u . q_i

    (``mu`` the mean training rating, ``b_u``/``b_i`` user and item biases,
    ``p_u``/``q_i`` factors of length ``n_components``), and the model
    minimises the squared error over the set ``R`` of *observed* ratings
    only (zeros of ``X`` are missing, never "rated 0"), with L2 penalties:

        J = sum_{(u,i) in R} [ (r_ui - r_hat(u, i))**2
                               + lambda (|p_u|**2 + |q_i|**2) + lambda_b (b_u**2 + b_i**2) ]

    (Funk 2006; Koren, Bell and Volinsky 2009, eq. 5; the penalties sit inside
    the sum, once per rating, which is what per-rating SGD minimises: a user
    with ``n_u`` ratings pays ``n_u lambda |p_u|**2``). Solvers:

    ``"sgd"``
        Funk's and Surprise's stochastic gradient descent: for each rating,
        ``e = r_ui - r_hat``, ``b_u += lr (e - lambda_b b_u)``,
        ``p_u += lr (e q_i - lambda p_u)`` and likewise for ``b_i``, ``q_i``.
        Here ``batch_size`` ratings at a time are updated together (one
        vectorised step whose per-row updates are the sums of the per-rating
        ones), in an order shuffled each epoch by a seeded generator, so a
        CPU run repeats bit for bit. When a row is expected to appear more
        than ``1 / learning_rate`` times in one mini-batch (very large
        batches on skewed data), its step is scaled down to that bound.
    ``"adam"``
        The same mini-batch gradients with the Adam update (Kingma and Ba
        2015), as the "NaiveFunk" of the blog post "SVD for Image Compression and
        Recommender Systems" trains it; use a smaller
        ``learning_rate`` (e.g. 0.005).
    ``"als"``
        Alternating least squares on the observed entries: each sweep solves
        every user's ``(p_u, b_u)`` in closed form with the items fixed, then
        every item's ``(q_i, b_i)``, as batched ridge regressions with the
        penalties weighted by the row's rating count (ALS-WR, Zhou et al.
        2008). ``learning_rate``, ``batch_size`` and ``init_std`` do not
        matter beyond the initial item factors.

    ``transform`` (and so ``predict`` and ``recommend``) folds users in by
    the same ridge regression with the items fixed, so users not seen in
    ``fit`` get a factor and a bias; a row with no rating gets the bias-only
    prediction ``mu + b_i``.

    Growing: :meth:`partial_fit` runs one epoch on new ratings from the
    current parameters, with new users (more rows) and new items (more
    columns) initialised as in ``fit``; ``warm_start=True`` makes ``fit``
    start from the current parameters too. Data-parallel: when a
    ``torch.distributed`` process group is initialised (``torchrun``,
    :func:`sksvd.distributed.spawn`), or with ``distributed=True``, ``fit``
    and ``partial_fit`` shard the ratings by user over the ranks and sum the
    item updates (:mod:`sksvd.distributed`): the result is a single-process
    fit with the same ``batch_size``, held by every rank.

    Parameters
    ----------
    n_components : int, default=32
        Length of the factors ``p_u``, ``q_i``.
    loss : {"mse_all", "mse"}, default="mse_all"
        "mse_all": every entry, the missing ones as weighted zeros (top-N
        lists); "mse": the observed ratings only (rating prediction).
    unobserved_weight : float in [0, 1], default=0.25
        ``w0`` of ``loss="mse_all"``, the weight of a missing entry relative
        to a stored one.
    n_epochs : int, default=12
        Passes over the ratings (ALS sweeps).
    learning_rate : float, default=0.03
        SGD step ``lr`` (or Adam's step size).
    learning_rate_decay : float, default=1.0
        Epoch ``e`` (0-based, counted within each ``fit``/``partial_fit``
        call) steps with ``learning_rate * learning_rate_decay**e`` (SGD and
        Adam), as Koren (2009) decays it by 0.9 per sweep; 1.0 keeps it fixed.
    regularization : float, default=0.06
        ``lambda``, the penalty on the factors.
    reg_bias : float or None, default=None
        ``lambda_b``, the penalty on the biases (None: ``regularization``).
    init_std : float, default=0.02
        Standard deviation of the normal initial factors (biases start at 0).
    batch_size : int, default=4096
        Ratings per vectorised SGD/Adam step.
    solver : {"auto", "sgd", "adam", "als"}, default="auto"
        "auto" is "als" for ``loss="mse_all"`` (its only solver) and "sgd"
        for ``loss="mse"``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the ratings, stop when their
        RMSE has not improved for ``n_iter_no_change`` epochs, and keep the
        best epoch's parameters (``loss="mse"`` only).
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=5
    callback : callable or None, default=None
        ``callback(epoch, loss)`` after each epoch; an exception it raises
        stops training and leaves the estimator as it was before ``fit``.
    warm_start : bool, default=False
        When fitted already, ``fit`` starts from the current factors and
        biases (and keeps ``global_mean_``) instead of a fresh
        initialisation; ``X`` may have more rows and columns (new users and
        items start as in a fresh fit), ``loss_curve_`` and ``n_iter_``
        continue. ``n_components`` must be unchanged.
    distributed : {"auto", True, False}, default="auto"
        Data-parallel training under ``torch.distributed``: "auto" when a
        process group is initialised, True to require one (initialised here
        from the ``torchrun`` variables if needed), False never. Every rank
        passes an ``X`` of the same shape; rank ``r`` trains on the users
        ``u % world_size == r`` and ignores the other rows. ``batch_size`` is
        the effective (summed over ranks) batch; ``solver="als"`` is not
        supported. See :mod:`sksvd.distributed`.
    device : str or torch.device, default="auto"
        "auto" (``SKSVD_DEVICE``, else cuda when available, else cpu), "cpu",
        "cuda" or "cuda:N".
    dtype : str, default="float32"
    random_state : int, RandomState instance or None, default=None
        Seeds the initial factors, the shuffles and the validation split.
    verbose : int, default=0
        A progress bar with the current loss when > 0.

    Attributes
    ----------
    user_factors_ : ndarray of shape (n_users, n_components)
    item_factors_ : ndarray of shape (n_items, n_components)
    user_bias_ : ndarray of shape (n_users,)
    item_bias_ : ndarray of shape (n_items,)
    global_mean_ : float
        Mean of the training ratings.
    loss_curve_ : list of float
        Per epoch, ``J`` divided by the number of training ratings (for SGD
        and Adam, the squared errors are those seen by each mini-batch
        before its step, the penalties those at the end of the epoch).
    validation_scores_ : list of float or None
        Per-epoch validation RMSE with ``early_stopping``, else None.
    n_iter_ : int
        Epochs run (summed over ``partial_fit`` calls and warm starts).
    n_users_, n_items_, n_features_in_ : int

    Raises
    ------
    ValueError
        ``X`` empty, with NaN or inf, or with no nonzero rating; a
        parameter out of range; training diverged
        (:class:`sksvd.recommenders._training.DivergenceError`, naming the
        learning rate).

    Notes
    -----
    Users and items without a training rating keep zero factors and biases.
    On CPU, while the mini-batch tensors are small (``batch_size *
    (n_components + 2) < 2**22`` elements; always for ALS, whose blocks are
    smaller), training runs on one torch thread (the setting is restored
    after ``fit``): such small ops lose more to thread synchronisation than
    they gain, most of all on a busy machine.
    On a GPU, use large batches (e.g. ``batch_size=2**18``) so that kernel
    launches do not dominate.

    References
    ----------
    S. Funk, "Netflix Update: Try This at Home", 2006.
    Y. Koren, R. Bell, C. Volinsky, "Matrix Factorization Techniques for
    Recommender Systems", IEEE Computer 42(8), 2009.
    Y. Zhou, D. Wilkinson, R. Schreiber, R. Pan, "Large-Scale Parallel
    Collaborative Filtering for the Netflix Prize", AAIM 2008.

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd import FunkSVD
    >>> X = np.array([[5, 4, 0, 1], [4, 5, 1, 0], [0, 1, 5, 4], [1, 0, 4, 5]])
    >>> rec = FunkSVD(n_components=2, random_state=0, device="cpu").fit(X)  # top-N lists
    >>> ids, _ = rec.recommend(np.array([[5, 0, 0, 0]]), k=1)  # a new user
    >>> int(ids[0, 0])
    1
    >>> rat = FunkSVD(n_components=2, loss="mse", n_epochs=200, learning_rate=0.05,
    ...               regularization=0.01, random_state=0, device="cpu").fit(X)
    >>> rat.predict_ratings([0, 1], [0, 1]).round()  # ratings
    array([5., 5.], dtype=float32)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "learning_rate_decay": [Interval(numbers.Real, 0, 1, closed="right")],
        "regularization": [Interval(numbers.Real, 0, None, closed="left")],
        "reg_bias": [Interval(numbers.Real, 0, None, closed="left"), None],
        "init_std": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "solver": [StrOptions({"auto", "sgd", "adam", "als"})],
        "loss": [StrOptions({"mse_all", "mse"})],
        "unobserved_weight": [Interval(numbers.Real, 0, 1, closed="both")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "callback": [callable, None],
        "warm_start": ["boolean"],
        "distributed": ["boolean", StrOptions({"auto"})],
        "device": [str, torch.device],
        "dtype": [str, type, np.dtype, torch.dtype],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, n_components=32, *, n_epochs=12, learning_rate=0.03,
                 learning_rate_decay=1.0, regularization=0.06, reg_bias=None, init_std=0.02,
                 batch_size=4096, solver="auto", loss="mse_all", unobserved_weight=0.25,
                 early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=5, callback=None, warm_start=False, distributed="auto",
                 device="auto", dtype="float32", random_state=None, verbose=0):
        self.n_components = n_components
        self.n_epochs = n_epochs
        self.learning_rate = learning_rate
        self.learning_rate_decay = learning_rate_decay
        self.regularization = regularization
        self.reg_bias = reg_bias
        self.init_std = init_std
        self.batch_size = batch_size
        self.solver = solver
        self.loss = loss
        self.unobserved_weight = unobserved_weight
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.callback = callback
        self.warm_start = warm_start
        self.distributed = distributed
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        """Fit the factors and biases to the observed ratings of ``X``.

        An exception during training (divergence, a ``callback`` that raises,
        ``KeyboardInterrupt``) leaves the estimator exactly as before the call.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Ratings; zeros are missing entries.
        y : None
            Ignored.

        Returns
        -------
        self : FunkSVD
        """
        return super().fit(X, y)  # the base class restores the state on any exception

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """One epoch over the ratings of ``X``, continuing from the current parameters.

        Row ``u`` of ``X`` is user ``u`` and column ``i`` item ``i`` of the
        fitted model; ``X`` may have more rows (new users) and more columns
        (new items) than before, whose factors start as in ``fit`` (the
        fitted ones continue from their values, ``global_mean_`` is kept).
        Only the ratings of ``X`` are visited: pass the new ones. On an
        unfitted estimator it initialises as ``fit`` does and runs one epoch.
        ``early_stopping`` is not used. With ``solver="adam"`` the moments and
        step count carry over from the previous call (in memory and in
        pickles, not through :func:`sksvd.io.save`); ``"als"`` re-solves the
        users and items that have ratings in ``X`` from those ratings alone.
        An exception leaves the estimator exactly as before the call.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            New ratings; ``n_items`` >= the fitted ``n_items_``.
        y : None
            Ignored.

        Returns
        -------
        self : FunkSVD

        Examples
        --------
        >>> import numpy as np
        >>> from sksvd import FunkSVD
        >>> rec = FunkSVD(n_components=2, random_state=0, device="cpu")
        >>> rec = rec.partial_fit(np.array([[5, 4, 0], [4, 0, 1]]))
        >>> rec = rec.partial_fit(np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 5]]))
        >>> rec.user_factors_.shape, rec.item_factors_.shape, rec.n_iter_
        ((3, 2), (4, 2), 2)
        """
        with self._restored_on_error():
            X = check_growing_interactions(self, X)
            self._fit(X, partial=True)
            return self

    def _start_state(self):
        """(pa0, qa0, mu) of the fitted model, for warm start and partial_fit."""
        k = self.n_components
        if self.item_factors_.shape[1] != k:
            raise ValueError(
                f"n_components={k}: the fitted model has {self.item_factors_.shape[1]}; "
                "warm_start and partial_fit continue it, so it must stay the same"
            )
        n_users = self.user_factors_.shape[0]
        pa0 = np.column_stack([self.user_factors_, self.user_bias_, np.ones(n_users)])
        qa0 = np.column_stack([self.item_factors_, np.ones(self.item_factors_.shape[0]),
                               self.item_bias_])
        return pa0, qa0, self.global_mean_

    def _fold_in_new_users(self, X, start, device, dtype):
        """Start the new users (rows past the fitted ones) at their fold-in.

        A new user's ``(p_u, b_u)`` is the ridge regression ``transform``
        solves, on their ratings of the fitted items, so that one pass of
        ``partial_fit`` refines a good vector instead of a random one.
        """
        pa0, qa0, mu = start
        n_old, m_old = pa0.shape[0], qa0.shape[0]
        rows = n_old + np.flatnonzero(np.diff(X.indptr[n_old:]))
        if rows.size == 0:
            return start
        k = self.n_components
        new = np.zeros((X.shape[0] - n_old, k + 2))
        new[:, k + 1] = 1.0
        Xn = X[rows][:, :m_old].tocsr()
        for s, e in self._batches(rows.size, None):
            W, c = self._fold_in(Xn[s:e], device, dtype)
            new[rows[s:e] - n_old, :k] = to_numpy(W, dtype=np.float64)
            if c is not None:  # loss="mse_all" has no biases
                new[rows[s:e] - n_old, k] = to_numpy(c, dtype=np.float64) - mu
        return np.concatenate([pa0, new]), qa0, mu

    def _solver(self):
        """The solver that ``solver`` and ``loss`` name together."""
        if self.loss == "mse_all":
            if self.solver not in ("auto", "als"):
                raise ValueError(f"solver={self.solver!r}: loss='mse_all' is solved by "
                                 "alternating least squares; use solver='auto' or 'als', or "
                                 "loss='mse' for SGD or Adam on the observed ratings")
            return "als"
        return "sgd" if self.solver == "auto" else self.solver

    def _fit(self, X, partial=False):
        device, dtype = self._device(), self._dtype()
        dist = resolve_distributed(self.distributed, device)
        solver = self._solver()
        if dist and solver == "als":
            raise ValueError(f"solver={solver!r}: data-parallel training (distributed) "
                             "supports 'sgd' and 'adam' (with loss='mse')")
        if self.early_stopping and self.loss != "mse":
            raise ValueError(f"early_stopping=True: stops on the RMSE of held-out ratings, "
                             f"which loss={self.loss!r} does not fit; use loss='mse', or "
                             "choose n_epochs with sksvd.model_selection.make_topk_scorer")
        continued = (partial or self.warm_start) and hasattr(self, "item_factors_")
        start = self._start_state() if continued else None
        if continued:  # the fitted model's sizes until this call ends (fit reset them)
            self.n_users_, self.n_items_ = start[0].shape[0], start[1].shape[0]
        shape = X.shape
        if start is not None:
            shape = (max(shape[0], start[0].shape[0]), max(shape[1], start[1].shape[0]))
        if dist:
            lo = allreduce_values(shape, op="min")
            hi = allreduce_values(shape, op="max")
            if (lo != hi).any():
                raise ValueError(f"X: shape {X.shape} on rank {get_rank()}, but the ranks' "
                                 f"shapes range from {tuple(lo.astype(int))} to "
                                 f"{tuple(hi.astype(int))}; every rank passes the same shape")
            X = shard_rows(X)
        X = grow(X, shape)
        if start is not None:
            start = self._fold_in_new_users(X, start, device, dtype)
        nnz = int(allreduce_values([X.nnz])[0]) if dist else X.nnz
        if nnz == 0:
            raise ValueError(
                f"X: all {X.shape[0]}x{X.shape[1]} entries are zero; FunkSVD needs at least "
                "one observed (nonzero) rating"
            )
        seed = seed_from_random_state(self.random_state)
        if continued:  # successive calls draw new shuffles, and repeat
            seed = call_seed(seed, self.n_iter_)
        gen = make_generator(seed, device)
        X_val = None
        if self.early_stopping and not partial:
            rng = np.random.default_rng(rank_seed(seed) if dist else seed)
            X, X_val = validation_split(X, self.validation_fraction, rng)
            n_fit, n_val = ((int(v) for v in allreduce_values([X.nnz, X_val.nnz])) if dist
                            else (X.nnz, X_val.nnz))
            if n_fit == 0 or n_val == 0:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction!r}: leaves "
                    f"{n_fit} training and {n_val} validation ratings; both must be > 0"
                )
        if solver == "als":
            work = _RIDGE_BLOCK["cpu"]
        else:
            work = self.batch_size * (self.n_components + 2)
        with _threads_for(device, work), torch.no_grad():
            tr = _Trainer(self, X, X_val, device, dtype, gen, start=start, dist=dist, seed=seed)
            if continued:
                tr.adam_start = getattr(self, "_optimizer_state", None)
            epoch_fn = {"sgd": tr.sgd_epoch, "adam": tr.adam_epoch,
                        "als": tr.wmf_epoch if self.loss == "mse_all" else tr.als_epoch}[solver]
            validate = tr.validate if tr.val is not None else None
            losses, scores = run_epochs(
                epoch_fn, 1 if partial else self.n_epochs, learning_rate=self.learning_rate,
                validate_fn=validate, n_iter_no_change=self.n_iter_no_change,
                callback=self.callback, verbose=self.verbose, desc="FunkSVD",
                snapshot_fn=tr.snapshot, restore_fn=tr.restore)
            tr.gather_users()
        k, np_dtype = self.n_components, numpy_dtype(dtype)
        pa, qa = to_numpy(tr.pa, dtype=np_dtype), to_numpy(tr.qa, dtype=np_dtype)
        if not (np.isfinite(pa).all() and np.isfinite(qa).all()):
            raise ValueError(
                f"learning_rate={self.learning_rate!r}: training produced non-finite factors; "
                "lower the learning rate or raise the regularization"
            )
        # Fitted state is written only now that training has finished.
        self.user_factors_ = np.ascontiguousarray(pa[:, :k])
        self.user_bias_ = np.ascontiguousarray(pa[:, k])
        self.item_factors_ = np.ascontiguousarray(qa[:, :k])
        self.item_bias_ = np.ascontiguousarray(qa[:, k + 1])
        self.global_mean_ = tr.mu
        if continued:
            losses = list(self.loss_curve_) + losses
            if validate is not None and self.validation_scores_ is not None:
                scores = list(self.validation_scores_) + scores
        self.loss_curve_ = losses
        self.validation_scores_ = scores if validate is not None else None
        self.n_iter_ = len(losses)
        self.__dict__.pop("_optimizer_state", None)
        if tr._adam is not None:  # carried over to the next partial_fit / warm start
            self._optimizer_state = {
                "t": tr._adam["t"],
                "m": [to_numpy(t).copy() for t in tr._adam["m"]],
                "v": [to_numpy(t).copy() for t in tr._adam["v"]]}
        self.n_users_, self.n_items_ = X.shape
        self.n_features_in_ = X.shape[1]

    def _fold_in(self, X, device, dtype):
        """Ridge-solve each row's ``(p_u, b_u)`` with the items fixed (batched on ``device``)."""
        if self.loss == "mse_all":
            return self._fold_in_all(X, device, dtype)
        k = self.n_components
        reg = float(self.regularization)
        reg_b = reg if self.reg_bias is None else float(self.reg_bias)
        # zero-copy views of the fitted arrays on CPU: nothing of size n_items per call
        feats = device_array(self, "item_factors_", device, dtype)  # once per fit
        offsets = device_array(self, "item_bias_", device, dtype)
        reg_vec = torch.full((k + 1,), reg, dtype=dtype, device=device)
        reg_vec[k] = reg_b
        z = torch.zeros((X.shape[0], k + 1), dtype=dtype, device=device)
        if X.nnz:
            block = max(1, _RIDGE_BLOCK.get(device.type, 2**21) // (k + 1))
            plan = _plan_rows(np.diff(X.indptr), block)
            with _threads_for(device, X.nnz * (k + 1)):
                _ridge_rows(torch.from_numpy(X.indptr.astype(np.int64)).to(device),
                            torch.from_numpy(X.indices.astype(np.int64)).to(device),
                            torch.from_numpy(X.data).to(device=device, dtype=dtype)
                            - self.global_mean_,
                            feats, offsets, reg_vec, plan, z, append_one=True)
        return z[:, :k], z[:, k] + self.global_mean_

    def _fold_in_all(self, X, device, dtype):
        """``loss="mse_all"``: each row's ``p_u`` by the weighted ridge regression of a sweep."""
        k = self.n_components
        feats = device_array(self, "item_factors_", device, dtype)  # once per fit
        gram = feats.T.to(torch.float64) @ feats.to(torch.float64)
        reg = torch.full((k,), float(self.regularization), dtype=dtype, device=device)
        z = torch.zeros((X.shape[0], k), dtype=dtype, device=device)
        if X.nnz:
            block = max(1, _RIDGE_BLOCK.get(device.type, 2**21) // (k + 1))
            with _threads_for(device, X.nnz * (k + 1)):
                _ridge_rows(torch.from_numpy(X.indptr.astype(np.int64)).to(device),
                            torch.from_numpy(X.indices.astype(np.int64)).to(device),
                            torch.from_numpy(X.data).to(device=device, dtype=dtype),
                            feats, torch.zeros(feats.shape[0], dtype=dtype, device=device),
                            reg, _plan_rows(np.diff(X.indptr), block), z, gram=gram,
                            unobserved_weight=float(self.unobserved_weight))
        return z, None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # transform's output follows the `dtype` parameter (float32 by default),
        # not the input's dtype.
        tags.transformer_tags.preserves_dtype = []
        return tags
