"""AsySVD's kernels: user-batched loss and exact gradients, negatives, the SVD start, the trainer.

Training is user-batched: a batch of users' profiles is one sparse matrix,
their vectors are one sparse-dense product, the loss covers all their
observed items at once, and the gradients are written by hand as further
sparse products (no autograd, no Python loop per user or per interaction).
The functions are pure on tensors (a :class:`Batch` holds one batch's
pattern); :class:`AsyTrainer` holds the tensors of one fit.
:class:`sksvd.recommenders.asysvd.AsySVD` is the scikit-learn glue around
them; the fit skeleton shared with FunkSVD is in
:mod:`sksvd.recommenders._sgd_base`.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .._backend import make_generator
from .._optim import Adam
from ..distributed import allreduce_, allreduce_values, rank_seed

__all__ = ["POOL_SIZE", "AsyTrainer", "Batch", "draw_pool", "loss_and_grad", "pool_columns",
           "pool_hits", "svd_init", "unrated_items", "user_vectors"]

# Items in the shared pool from which a batch's negatives are drawn (ranking losses).
POOL_SIZE = 1024


def _csr(crow, col, values, shape):
    with warnings.catch_warnings():
        # torch flags sparse CSR as "beta"; the operations used here are stable.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size=shape, check_invariants=False)


class Batch:
    """A batch of user profiles as flat tensors on the device.

    ``crow``/``col``/``val``: the rows' CSR; ``row``: the local row of each
    stored entry; ``s = |R(u)|^-1/2`` per row (0 for an empty row); with
    ``local``, ``items`` (sorted) maps the batch's columns back to item ids
    and ``extra`` columns (no stored entry: the negatives' pool) follow them;
    ``yw``: the weight of each entry in the y-term (1, or its value when
    ``weighted``); ``crow_t``/``col_t``/``perm_t``: the transposed
    pattern (items x rows) and the permutation taking entry order to it, so
    that ``A.T @ G`` is a row-parallel sparse product too.
    """

    def __init__(self, X, device, dtype, transposed=True, local=False, extra=0,
                 weighted=False):
        self.items = None
        if local:
            # Columns renumbered to the batch's own items (then ``extra`` spare columns,
            # the negatives' pool): every tensor is sized by the batch, not the catalogue.
            items, cols = np.unique(X.indices, return_inverse=True)
            X = X.__class__((X.data, cols.reshape(-1), X.indptr),
                            shape=(X.shape[0], items.size + extra))
            self.items = torch.from_numpy(items.astype(np.int64)).to(device)
        m, n_items = X.shape
        self.shape = (m, n_items)
        self.nnz = int(X.nnz)
        counts = np.diff(X.indptr)
        self.crow = torch.from_numpy(X.indptr.astype(np.int64)).to(device)
        self.col = torch.from_numpy(X.indices.astype(np.int64)).to(device)
        self.val = torch.from_numpy(np.asarray(X.data)).to(device=device, dtype=dtype)
        row = np.repeat(np.arange(m, dtype=np.int64), counts)
        self.row = torch.from_numpy(row).to(device)
        self.n = torch.from_numpy(counts).to(device=device, dtype=dtype)
        s = np.zeros(m, dtype=np.float64)
        np.divide(1.0, np.sqrt(counts), out=s, where=counts > 0)
        self.s = torch.from_numpy(s).to(device=device, dtype=dtype)
        self.ones = torch.ones(self.nnz, device=device, dtype=dtype)
        # The weights of the y-term's sum: 1, or the stored values (``profile_weights``).
        self.yw = self.val if weighted else self.ones
        self.weighted = bool(weighted)
        if transposed:
            order = np.argsort(X.indices, kind="stable").astype(np.int64)
            crow_t = np.zeros(n_items + 1, dtype=np.int64)
            np.cumsum(np.bincount(X.indices, minlength=n_items), out=crow_t[1:])
            self.perm_t = torch.from_numpy(order).to(device)
            self.crow_t = torch.from_numpy(crow_t).to(device)
            self.col_t = torch.from_numpy(row[order]).to(device)
            self.item_count = torch.diff(self.crow_t).to(dtype)

    def mat(self, values):
        """The batch pattern with ``values`` (in entry order), rows x items."""
        return _csr(self.crow, self.col, values, self.shape)

    def mat_t(self, values, permuted=False):
        """The transposed pattern (items x rows) with ``values`` in entry order
        (or already in transposed order when ``permuted``)."""
        values = values if permuted else values[self.perm_t]
        return _csr(self.crow_t, self.col_t, values, self.shape[::-1])


def _row_sum(batch, values):
    out = torch.zeros(batch.shape[0], dtype=values.dtype, device=values.device)
    return out.index_add_(0, batch.row, values)


def _item_sum(batch, values):
    out = torch.zeros(batch.shape[1], dtype=values.dtype, device=values.device)
    return out.index_add_(0, batch.col, values)


def _sddmm(batch, A, B):
    """``(A @ B.T)[u, j]`` at the batch's stored entries, in entry order."""
    if batch.nnz == 0:
        return torch.zeros(0, dtype=A.dtype, device=A.device)
    pattern = batch.mat(batch.ones)
    return torch.sparse.sampled_addmm(pattern, A, B.T, beta=0.0).values()


def _spmm(batch, values, B):
    """``M @ B`` for the batch pattern ``M`` holding ``values`` (rows x items)."""
    return torch.sparse.mm(batch.mat(values), B)


def _spmm_t(batch, values, B, permuted=False):
    """``M.T @ B`` for the batch pattern ``M`` holding ``values`` (items x rows)."""
    return torch.sparse.mm(batch.mat_t(values, permuted), B)


def _sq_norms(A):
    return torch.linalg.vector_norm(A, dim=1).square_()


def _row_dot(A, B):
    return torch.einsum("ij,ij->i", A, B)


def _safe_div(num, den):
    """``num / den``, 0 where ``den == 0`` (an empty profile has no bias)."""
    return torch.where(den > 0, num / den.clamp(min=torch.finfo(den.dtype).tiny),
                       torch.zeros_like(num))


def _safe_rsqrt(n):
    """``n ** -1/2``, 0 where ``n == 0`` (no NaN from an empty profile)."""
    return torch.where(n > 0, n.clamp(min=1.0).rsqrt(), torch.zeros_like(n))


def user_vectors(batch, params, mu, shrinkage):
    """User vectors and biases of full profiles (fold-in, and training without leave-one-out).

    With biases: ``resid_uj = r_uj - mu - b_j``, ``b_u = sum_j resid_uj /
    (shrinkage + |R(u)|)``, ``r0_uj = resid_uj - b_u``, ``U_u = sum_j r0_uj x_j
    + sum_j w_uj y_j`` and ``p_u = |R(u)|^-1/2 U_u``; without, ``U_u = sum_j
    w_uj y_j`` (``w_uj = batch.yw``: 1, or ``r_uj`` with ``profile_weights="value"``).

    Returns
    -------
    P, beta, U, r0 : tensors (``beta`` and ``r0`` are None without biases)
    """
    U = _spmm(batch, batch.yw, params["y"])
    beta = r0 = None
    if "x" in params:
        resid = batch.val - mu - params["b"][batch.col]
        beta = _safe_div(_row_sum(batch, resid), batch.n + shrinkage)
        r0 = resid.sub_(beta[batch.row])
        U += _spmm(batch, r0, params["x"])
    return U * batch.s[:, None], beta, U, r0


def _squared_error(err, weights):
    """``sum_e w_e err_e^2`` (``w = 1`` when ``weights`` is None) and its gradient."""
    if weights is None:
        return torch.dot(err, err), err * 2.0
    werr = err * weights
    return torch.dot(werr, err), werr.mul_(2.0)


def _sampled_negatives(batch, P, beta, params, mu, negatives, rhat, loss, weights=None):
    """Loss of the sampled negatives and its gradient (shared pool, see AsySVD).

    ``weights`` (per stored entry, or None) multiply the entry's terms: its
    BPR pairs, or its squared error and its negatives' squared scores.
    """
    Q = params["q"]
    m, n_items = batch.shape
    row, col = batch.row, batch.col
    pool, idx = negatives[:2]
    K, n_neg = pool.shape[0], idx.shape[1]
    Qp = Q[pool]
    S = P @ Qp.T
    if beta is not None:
        S += (mu + beta)[:, None]
        S += params["b"][pool]
    # Negatives the user has rated are masked out.
    if len(negatives) > 2:
        hit = negatives[2]
    else:
        where = torch.full((n_items,), -1, dtype=torch.int64, device=Q.device)
        where[pool] = torch.arange(K, device=Q.device)
        hit = where[col]
    seen = torch.zeros(m * K, dtype=torch.bool, device=Q.device)
    keep = hit >= 0
    seen[row[keep] * K + hit[keep]] = True
    flat = (row[:, None] * K + idx).reshape(-1)
    vf = (~seen[flat]).to(Q.dtype)
    pw = vf if weights is None else vf * weights.repeat_interleave(n_neg)
    s_neg = S.reshape(-1)[flat]
    if loss == "bpr":
        z = rhat.repeat_interleave(n_neg) - s_neg
        total = torch.dot(torch.nn.functional.softplus(-z), pw)
        dz = torch.sigmoid(-z).mul_(pw).neg_()
        g = dz.view(-1, n_neg).sum(1)
        g_neg = dz.neg_()
    else:  # "mse_neg": observed values as targets, sampled negatives as zeros
        total, g = _squared_error(rhat - batch.val, weights)
        g_neg = s_neg * pw
        total = total + torch.dot(g_neg, s_neg)
        g_neg.mul_(2.0)
    G_pool = torch.zeros(m * K, dtype=Q.dtype, device=Q.device)
    G_pool = G_pool.index_add_(0, flat, g_neg).view(m, K)
    neg_count = torch.zeros(K, dtype=Q.dtype, device=Q.device)
    neg_count.index_add_(0, idx.reshape(-1), vf)
    return total, g, G_pool, neg_count, Qp


def loss_and_grad(params, batch, *, mu, regularization, shrinkage, loss, leave_one_out=False,
                   negatives=None, confidence=False):
    """Summed loss over one batch of users and its exact gradient, by hand.

    The prediction for a stored entry ``e = (u, i)`` uses the profile
    ``R(u)`` or, when ``leave_one_out``, ``R(u) - {i}``; sampled negatives
    (never in ``R(u)``) use the full profile.

    Parameters
    ----------
    params : dict of tensors
        ``q`` (n_items, d), ``y`` (n_items, d); with biases also ``x``
        (n_items, d) and ``b`` (n_items,).
    batch : Batch
    mu, regularization, shrinkage : float
    loss : {"mse", "bpr", "mse_neg"}
    leave_one_out : bool
    negatives : (pool, idx) or (pool, idx, hit) or None
        For the ranking losses: ``pool`` (K,) distinct item ids and ``idx``
        (nnz, n_negatives) positions in ``pool``; the negatives of stored
        entry ``e`` are ``pool[idx[e]]``. A negative the user has rated is
        ignored: ``hit`` (nnz,) gives the position in ``pool`` of each stored
        entry's item, -1 if absent (found from ``pool`` when not given; given
        when the pool's rows are copies of items, see ``Batch(local=True)``).
    confidence : bool
        Weigh each stored entry's loss terms by its stored value.

    Returns
    -------
    loss : float
        ``sum_pos l + regularization * (sum over positives (u, i) of
        ||q_i||^2 + ||x_i||^2 + ||y_i||^2 + b_i^2 + sum over valid negatives
        (u, j) of ||q_j||^2 + b_j^2)``.
    grads : dict of tensors, same keys as ``params``
    """
    if leave_one_out:
        return _loss_and_grad_loo(params, batch, mu=mu, regularization=regularization,
                                  shrinkage=shrinkage, loss=loss, negatives=negatives,
                                  confidence=confidence)
    weights = batch.val if confidence else None
    Q = params["q"]
    biased = "x" in params
    # rhat_ui = mu + b_u + b_i + s_u q_i . U_u
    P, beta, U, r0 = user_vectors(batch, params, mu, shrinkage)
    h = _sddmm(batch, U, Q)
    if biased:
        err = h.mul_(batch.s[batch.row]).sub_(r0)       # rhat - r = s q.U - r0
    else:
        err = h.mul_(batch.s[batch.row]).sub_(batch.val)
    G_pool = None
    if loss == "mse":
        total, g = _squared_error(err, weights)
    else:
        total, g, G_pool, neg_count, Qp = _sampled_negatives(
            batch, P, beta, params, mu, negatives, err + batch.val, loss, weights)
    total, grads = _regularise(params, batch, total, regularization,
                               None if G_pool is None else (negatives[0], neg_count))
    s = batch.s
    h = g * s[batch.row]                          # d loss / d (q_i . U_u)
    gU = _spmm(batch, h, Q)
    grads["q"] += _spmm_t(batch, h, U)
    if G_pool is not None:
        pool = negatives[0]
        gP = G_pool @ Qp
        grads["q"].index_add_(0, pool, G_pool.T @ P)
        gU.addcmul_(s[:, None], gP)
    grads["y"] += _spmm_t(batch, batch.yw, gU, permuted=not batch.weighted)
    if biased:
        # U_u = sum_j (resid_uj - b_u) x_j + Ybar_u, b_u = sum_j resid_uj / den_u
        grads["x"] += _spmm_t(batch, r0, gU)
        xg = _sddmm(batch, gU, params["x"])          # x_j . gU_u
        g_beta = _row_sum(batch, g - xg)
        if G_pool is not None:
            g_beta += G_pool.sum(1)
            grads["b"].index_add_(0, pool, G_pool.sum(0))
        g_resid = xg.add_(_safe_div(g_beta, batch.n + shrinkage)[batch.row])
        grads["b"] += _item_sum(batch, g - g_resid)    # resid_uj = r_uj - mu - b_j
    return float(total), grads


def _regularise(params, batch, total, regularization, negatives):
    """Add the per-occurrence L2 term to ``total``; return it and its gradient."""
    reg, count = regularization, batch.item_count
    biased = "x" in params
    sq_q = _sq_norms(params["q"])
    reg_sq = sq_q + _sq_norms(params["y"])
    if biased:
        b = params["b"]
        reg_sq += _sq_norms(params["x"]) + b * b
    total = total + reg * torch.dot(count, reg_sq)
    grads = {k: v * (2.0 * reg * (count if v.dim() == 1 else count[:, None]))
             for k, v in params.items()}
    if negatives is not None:
        pool, neg_count = negatives
        neg_sq = sq_q[pool] + (b[pool] ** 2 if biased else 0.0)
        total = total + reg * torch.dot(neg_count, neg_sq)
        grads["q"].index_add_(0, pool, params["q"][pool] * (2.0 * reg * neg_count[:, None]))
        if biased:
            grads["b"].index_add_(0, pool, b[pool] * (2.0 * reg * neg_count))
    return total, grads


def _loss_and_grad_loo(params, batch, *, mu, regularization, shrinkage, loss, negatives,
                       confidence=False):
    """:func:`loss_and_grad` with each stored entry left out of its own profile.

    With ``resid_uj = r_uj - mu - b_j``, ``Ru = sum_j resid_uj``, ``A_u =
    sum_j resid_uj x_j``, ``Xbar_u = sum_j x_j``, ``Ybar_u = sum_j w_uj y_j`` over
    the full profile, the prediction of ``e = (u, i)`` without ``i`` is

    ``rhat_e = mu + beta_e + b_i + s_e q_i . (A_u + Ybar_u - beta_e Xbar_u
    - (resid_ui - beta_e) x_i - y_i)``, ``s_e = (|R(u)| - 1)^-1/2``,
    ``beta_e = (Ru - resid_ui) / (shrinkage + |R(u)| - 1)``

    (without biases ``rhat_e = s_e q_i . (Ybar_u - y_i)``), i.e. FISM's
    exclusion of the target item (Kabbur et al., KDD 2013).
    """
    Q, Y = params["q"], params["y"]
    biased = "x" in params
    row, col = batch.row, batch.col
    n_row = batch.n[row]
    s_e = _safe_rsqrt(n_row - 1.0)
    Ybar = _spmm(batch, batch.yw, Y)
    qy_e = _row_dot(Q, Y)[col]
    if batch.weighted:
        qy_e = qy_e * batch.yw
    if biased:
        X, b = params["x"], params["b"]
        resid = batch.val - mu - b[col]
        Ru = _row_sum(batch, resid)
        A, Xbar = _spmm(batch, resid, X), _spmm(batch, batch.ones, X)
        den_e = n_row + (shrinkage - 1.0)
        beta_e = _safe_div(Ru[row] - resid, den_e)
        AY = A + Ybar
        w = _sddmm(batch, Xbar, Q)
        qx_e = _row_dot(Q, X)[col]
        inner = _sddmm(batch, AY, Q) - beta_e * w - (resid - beta_e) * qx_e - qy_e
        rhat = s_e * inner + beta_e + b[col] + mu
    else:
        AY = Ybar
        rhat = s_e * (_sddmm(batch, Ybar, Q) - qy_e)

    weights = batch.val if confidence else None
    G_pool = None
    if loss == "mse":
        total, g = _squared_error(rhat - batch.val, weights)
    else:
        beta = None
        if biased:
            beta = _safe_div(Ru, batch.n + shrinkage)
            P = (A - beta[:, None] * Xbar + Ybar) * batch.s[:, None]
        else:
            P = Ybar * batch.s[:, None]
        total, g, G_pool, neg_count, Qp = _sampled_negatives(
            batch, P, beta, params, mu, negatives, rhat, loss, weights)
    total, grads = _regularise(params, batch, total, regularization,
                               None if G_pool is None else (negatives[0], neg_count))

    gQ, gY = grads["q"], grads["y"]
    h = g * s_e                                   # d loss / d inner
    gAY = _spmm(batch, h, Q)                      # inner has q_i . (A_u + Ybar_u)
    gQ += _spmm_t(batch, h, AY)
    ky = _item_sum(batch, h * batch.yw if batch.weighted else h).neg_()  # - w_e q_i . y_i
    gY.addcmul_(ky[:, None], Q)
    gQ.addcmul_(ky[:, None], Y)
    if G_pool is not None:
        pool = negatives[0]
        gP = G_pool @ Qp
        gQ.index_add_(0, pool, G_pool.T @ P)
        sgP = batch.s[:, None] * gP
        gAY += sgP
    if biased:
        gX, g_b = grads["x"], grads["b"]
        hb = h * beta_e                           # inner has - beta_e q_i . Xbar_u
        gXbar = _spmm(batch, hb, Q).neg_()
        gQ -= _spmm_t(batch, hb, Xbar)
        kx = _item_sum(batch, h * (beta_e - resid))   # inner has (beta_e - resid) q_i . x_i
        gX.addcmul_(kx[:, None], Q)
        gQ.addcmul_(kx[:, None], X)
        g_b += _item_sum(batch, g)
        g_beta_e = _safe_div(g + h * (qx_e - w), den_e)
        gRu = _row_sum(batch, g_beta_e)
        g_resid = g_beta_e.add_(h * qx_e).neg_()     # beta_e has - resid_ui, inner - resid qx
        if G_pool is not None:
            gXbar -= beta[:, None] * sgP
            g_beta = G_pool.sum(1) - _row_dot(sgP, Xbar)
            gRu += _safe_div(g_beta, batch.n + shrinkage)
            g_b.index_add_(0, pool, G_pool.sum(0))
        # A_u = sum_j resid_uj x_j, Xbar_u = sum_j x_j, Ru = sum_j resid_uj
        gX += _spmm_t(batch, resid, gAY)
        gX += _spmm_t(batch, batch.ones, gXbar, permuted=True)
        g_resid += _sddmm(batch, gAY, X).add_(gRu[row])
        g_b -= _item_sum(batch, g_resid)          # resid_uj = r_uj - mu - b_j
    gY += _spmm_t(batch, batch.yw, gAY, permuted=not batch.weighted)
    return float(total), grads


def draw_pool(n_items, size, gen, device):
    """``size`` distinct items drawn uniformly (a uniform random subset, random order)."""
    if n_items <= 64 * size:
        return torch.randperm(n_items, generator=gen, device=device)[:size]
    # A large catalogue: draws with replacement, duplicates dropped, a random ``size``
    # of them kept (no permutation of the whole catalogue per step).
    while True:
        cand = torch.unique(torch.randint(0, n_items, (size + size // 4 + 16,), generator=gen,
                                          device=device))
        if cand.numel() >= size:
            return cand[torch.randperm(cand.numel(), generator=gen, device=device)[:size]]


def pool_columns(batch, pool):
    """The pool's columns in a local batch (the spare ones after the batch's items)."""
    start = batch.items.shape[0]
    return torch.arange(start, start + pool.shape[0], device=pool.device)


def pool_hits(batch, pool):
    """Per stored entry of a local batch: its item's position in ``pool``, or -1."""
    items = batch.items
    where = torch.full((items.shape[0],), -1, dtype=torch.int64, device=pool.device)
    if items.numel():
        pos = torch.searchsorted(items, pool).clamp_(max=items.shape[0] - 1)
        found = items[pos] == pool
        where[pos[found]] = torch.arange(pool.shape[0], device=pool.device)[found]
    return where[batch.col]


def _allreduce_rows(rows, grads, n_items):
    """Sum row gradients over the ranks: the union of their rows and the summed gradients."""
    full = {n: torch.zeros((n_items,) + g.shape[1:], dtype=g.dtype, device=g.device)
            .index_add_(0, rows, g) for n, g in grads.items()}
    mask = torch.zeros(n_items, dtype=next(iter(grads.values())).dtype, device=rows.device)
    mask[rows] = 1.0
    allreduce_([*full.values(), mask])
    rows = torch.nonzero(mask).view(-1)
    return rows, {n: f[rows] for n, f in full.items()}


def svd_init(X, params, std, seed, device, dtype, values=False, shrinkage=0.0):
    """Start from PureSVD of the profiles: ``q = y = c V_k``, ``x = 0``, ``b = 0``.

    ``V_k`` (n_items, k) holds the top ``k = min(d, n_users, n_items)`` right
    singular vectors of the matrix ``B`` the ``y``-term sums: the 0/1
    pattern of ``X``, or ``X`` itself when ``values`` (``profile_weights=
    "value"``), computed as :class:`~sksvd.recommenders.SVDRecommender`
    computes them (the same solver; float64 on the CPU), scaled by ``c =
    std * sqrt(n_items)`` so that its entries have the root mean square
    ``std`` of the random initialisation. Then ``p_u = c |R(u)|^-1/2 b_u
    V_k`` and the scores ``q_i . p_u = c^2 |R(u)|^-1/2 (b_u V_k V_k^T)_i``
    rank every user's items as PureSVD of ``B`` does (a positive per-user
    factor, and ``b_u + b_i`` with ``x = 0``, do not change a ranking).
    Factors beyond ``k`` keep their random initialisation.

    With ``shrinkage = lambda > 0``, ``y = c V_k diag(s^2 / (s^2 + lambda))``
    instead: the scores then rank as PureSVD with spectral shrinkage
    (:class:`~sksvd.recommenders.SVDRecommender` ``shrinkage``).
    """
    from .puresvd import SVDRecommender

    B = X.astype(np.float64)  # a copy: the caller's X is left alone
    if not values:
        B.data = np.ones_like(B.data)
    k = min(params["q"].shape[1], *B.shape)
    svd = SVDRecommender(k, shrinkage=shrinkage, random_state=seed, device="cpu",
                         dtype="float64").fit(B)
    V = torch.from_numpy(svd.item_factors_).mul_(std * np.sqrt(B.shape[1]))
    params["q"][:, :k] = V.to(device=device, dtype=dtype)
    params["y"][:, :k] = (V * torch.from_numpy(svd.component_weights_)).to(device=device,
                                                                          dtype=dtype)
    if "x" in params:
        params["x"].zero_()



def unrated_items(indptr, indices, rows, n_items, rng):
    """One item per entry drawn uniformly among the items its row has not rated.

    Parameters
    ----------
    indptr, indices : ndarray
        CSR structure of the rows' full profiles (n_rows + 1,), (nnz,),
        column indices sorted within each row.
    rows : int ndarray (E,)
        The row of each draw.
    n_items : int
    rng : numpy.random.Generator

    Returns
    -------
    items : int64 ndarray (E,)
        ``items[e]`` is not among ``indices[indptr[rows[e]]:indptr[rows[e] + 1]]``;
        -1 where the row has rated every item.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sksvd.recommenders._asysvd_kernels import unrated_items
    >>> X = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1]]))
    >>> unrated_items(X.indptr, X.indices, np.array([0, 0, 1]), 3, np.random.default_rng(0))
    array([ 2,  2, -1])
    """
    rows = np.asarray(rows, dtype=np.int64)
    indptr = np.asarray(indptr, dtype=np.int64)
    counts = np.diff(indptr)
    # With a row's rated columns c_0 < c_1 < ..., d_k = c_k - k unrated items lie below c_k,
    # so the unrated item of rank r is r + #{k: d_k <= r}: one sorted search for all draws.
    entry_row = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    below = np.asarray(indices, dtype=np.int64) - (np.arange(entry_row.size) - indptr[entry_row])
    keys = entry_row * (n_items + 1) + below
    out = np.full(rows.size, -1, dtype=np.int64)
    todo = np.flatnonzero(counts[rows] < n_items)
    rank = rng.integers(0, n_items - counts[rows[todo]])
    found = np.searchsorted(keys, rows[todo] * (n_items + 1) + rank, side="right")
    out[todo] = rank + found - indptr[rows[todo]]
    return out


class AsyTrainer:
    """The item parameters, batches and optimizer of one AsySVD fit, and its epoch function.

    ``params``: ``q`` and ``y`` (n_items, d), with biases also ``x``
    (n_items, d) and ``b`` (n_items,); ``x`` and ``y`` are the slices of one
    ``weights`` tensor (n_terms, n_items, d). ``epoch(e) -> float`` runs one
    pass over the users in batches of ``batch_size`` (one lazy Adam step
    each, over the rows of the batch's items and negatives' pool) and returns
    the objective per stored entry. ``start`` (dict of numpy item
    parameters) continues a fitted model: its rows start there, new rows as
    in a fresh fit. With ``dist``, ``X`` holds this rank's users; gradients
    and losses are summed over the ranks and every rank takes the same
    number of steps.

    Parameters
    ----------
    X, X_val : scipy.sparse.csr_matrix (n_users, n_items), X_val or None
    config : dict
        ``n_components, biased, init, init_std, init_shrinkage,
        learning_rate, batch_size, n_negatives, weighted, loss,
        regularization, shrinkage, leave_one_out, confidence``.
    mu : float
    rng, local_rng : numpy.random.Generator
        ``rng`` orders the batches (the same on every rank); ``local_rng``
        draws this rank's users and validation negatives.
    """

    def __init__(self, X, X_val, config, *, mu, device, dtype, seed, rng, local_rng,
                 start=None, dist=False):
        c = config
        d, n_items, biased = int(c["n_components"]), X.shape[1], c["biased"]
        self.mu, self.dist, self.rng, self.n_items = mu, dist, rng, n_items
        init = torch.Generator().manual_seed(seed)
        std = c["init_std"]
        names = ["q", "x", "y", "b"] if biased else ["q", "y"]
        params = {}
        # x and y live in one (n_terms, n_items, d) tensor: item_weights_ without a copy.
        weights = torch.empty((2 if biased else 1, n_items, d), dtype=dtype, device=device)
        for name in names:
            shape = (n_items,) if name == "b" else (n_items, d)
            t = (torch.zeros(shape, dtype=torch.float64) if name == "b" else
                 torch.randn(shape, generator=init, dtype=torch.float64).mul_(std))
            if start is not None:  # fitted items continue from their values (copied)
                t[:start[name].shape[0]] = torch.as_tensor(start[name], dtype=torch.float64)
            if name in ("x", "y"):
                params[name] = weights[{"x": 0, "y": -1}[name]]
                params[name].copy_(t)
            else:
                params[name] = t.to(device=device, dtype=dtype)
            del t
        if c["init"] == "svd" and start is None:
            if dist:
                raise ValueError("init='svd': not available with distributed training (each "
                                 "rank holds only its users); use init='random'")
            svd_init(X, params, std, seed, device, dtype, values=c["weighted"],
                     shrinkage=float(c["init_shrinkage"]))
        self.params, self.weights = params, weights
        self.optimizer = Adam(params, c["learning_rate"])

        users = local_rng.permutation(np.flatnonzero(np.diff(X.indptr)))
        bs = int(c["batch_size"])
        if dist:
            # Every rank takes the same number of steps, ~batch_size / world_size users each.
            n_steps = max(1, -(-int(allreduce_values([users.size])[0]) // bs))
            chunks = np.array_split(users, n_steps)
        else:
            chunks = [users[s:s + bs] for s in range(0, users.size, bs)]
        self.ranking = c["loss"] != "mse"
        self.n_neg, self.pool_size = int(c["n_negatives"]), min(n_items, POOL_SIZE)
        extra = self.pool_size if self.ranking else 0
        self.batches = [Batch(X[ch], device, dtype, local=True, extra=extra,
                              weighted=c["weighted"]) for ch in chunks]
        # A step's gradient is divided by its entries over all ranks.
        step_nnz = np.array([b.nnz for b in self.batches], dtype=np.float64)
        self.step_nnz = allreduce_values(step_nnz) if dist else step_nnz
        self.gen = make_generator(rank_seed(seed) if dist else seed, device)
        self.device = device
        self.cfg = dict(mu=mu, regularization=float(c["regularization"]),
                        shrinkage=float(c["shrinkage"]), loss=c["loss"],
                        leave_one_out=c["leave_one_out"], confidence=c["confidence"])
        self.validate = None
        if X_val is not None:
            self.validate = _validation_score(X, X_val, params, mu, float(c["shrinkage"]),
                                              c["loss"], c["weighted"], device, dtype,
                                              local_rng, dist)
        self.higher_is_better = self.ranking

    def epoch(self, epoch):
        """One pass over the batches in a random order; the objective per stored entry."""
        params, opt, device = self.params, self.optimizer, self.device
        total, count = 0.0, 0
        for k in self.rng.permutation(len(self.batches)):
            batch = self.batches[k]
            if self.step_nnz[k] == 0:  # no rank has a user left for this step
                continue
            negatives, rows = None, batch.items
            if self.ranking and batch.nnz:
                pool = draw_pool(self.n_items, self.pool_size, self.gen, device)
                idx = torch.randint(0, self.pool_size, (batch.nnz, self.n_neg),
                                    generator=self.gen, device=device)
                negatives = (pool_columns(batch, pool), idx, pool_hits(batch, pool))
                rows = torch.cat([rows, pool])
            # Only the rows of the batch's items and of its pool take part
            # (gathered: a step costs the batch, not the catalogue).
            local = {n: p[rows] for n, p in params.items()}
            if batch.nnz:
                value, grads = loss_and_grad(local, batch, negatives=negatives, **self.cfg)
            else:
                value, grads = 0.0, {n: torch.zeros_like(g) for n, g in local.items()}
            if self.dist:
                rows, grads = _allreduce_rows(rows, grads, self.n_items)
            opt.step_rows(rows, grads, 1.0 / self.step_nnz[k])
            total += value
            count += batch.nnz
        if self.dist:
            total, count = allreduce_values([total, count])
        return total / count

    def snapshot(self):
        return {k: v.clone() for k, v in self.params.items()}

    def restore(self, state):
        for k, v in state.items():
            self.params[k].copy_(v)

    def finish(self):
        """Free the batches (memory for the users' fold-in that follows)."""
        self.batches.clear()


def _validation_score(X, X_val, params, mu, shrinkage, loss, weighted, device, dtype, rng,
                      dist=False):
    """Validation score: RMSE (mse) or sampled AUC (ranking losses) of held-out entries.

    Each held-out entry ``(u, i)`` is predicted from ``u``'s training row;
    the AUC compares it with one item ``u`` has not rated (in ``X`` nor in
    ``X_val``), drawn once; entries of users who rated every item are left
    out of it. Data-parallel, the sums are taken over every rank's held-out
    entries.
    """
    rows = np.flatnonzero(np.diff(X_val.indptr))
    train = Batch(X[rows], device, dtype, transposed=False, weighted=weighted)
    val = X_val[rows].tocoo()
    r = torch.from_numpy(val.row.astype(np.int64)).to(device)
    i = torch.from_numpy(val.col.astype(np.int64)).to(device)
    target = torch.from_numpy(val.data).to(device=device, dtype=dtype)
    neg = np.zeros(val.nnz, dtype=np.int64)
    if loss != "mse":
        full = (X[rows] + X_val[rows]).tocsr()
        full.sort_indices()
        neg = unrated_items(full.indptr, full.indices, val.row, X.shape[1], rng)
    has_neg = torch.from_numpy(neg >= 0).to(device)
    j = torch.from_numpy(np.maximum(neg, 0)).to(device)
    n_pairs = int(np.count_nonzero(neg >= 0))
    biased = "x" in params

    def score(items):
        P, beta, _, _ = user_vectors(train, params, mu, shrinkage)
        s = (P[r] * params["q"][items]).sum(1)
        if biased:
            s = s + mu + beta[r] + params["b"][items]
        return s

    def wins():
        return ((score(i) > score(j)) & has_neg).to(torch.float64).sum()

    def validate():
        with torch.no_grad():
            if not dist:
                if loss == "mse":
                    err = score(i) - target
                    return float(torch.sqrt(torch.mean(err * err)))
                return float(wins()) / max(n_pairs, 1)
            total = 0.0
            if val.nnz and loss == "mse":
                total = float(torch.sum((score(i) - target) ** 2, dtype=torch.float64))
            elif val.nnz:
                total = float(wins())
            total, count = allreduce_values([total, val.nnz if loss == "mse" else n_pairs])
            return float(np.sqrt(total / count)) if loss == "mse" else total / max(count, 1)

    return validate
