"""AsySVD: Koren's asymmetric SVD, users as normalised sums of item factors.

Training is user-batched: a batch of users' profiles is one sparse matrix,
their vectors are one sparse-dense product, the loss covers all their
observed items at once, and the gradients are written by hand as further
sparse products (no autograd, no Python loop per user or per interaction).
"""

from __future__ import annotations

import numbers
import warnings

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
    rank_seed,
    resolve_distributed,
    shard_rows,
)
from ._base import BaseRecommender
from ._incremental import call_seed, check_growing_interactions, grow
from ._training import run_epochs, validation_split

__all__ = ["AsySVD"]

# Items in the shared pool from which a batch's negatives are drawn (ranking losses).
_POOL_SIZE = 1024


# --------------------------------------------------------------------------- kernels
def _csr(crow, col, values, shape):
    with warnings.catch_warnings():
        # torch flags sparse CSR as "beta"; the operations used here are stable.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size=shape, check_invariants=False)


class _Batch:
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


def _user_vectors(batch, params, mu, shrinkage):
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


def _loss_and_grad(params, batch, *, mu, regularization, shrinkage, loss, leave_one_out=False,
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
    batch : _Batch
    mu, regularization, shrinkage : float
    loss : {"mse", "bpr", "mse_neg"}
    leave_one_out : bool
    negatives : (pool, idx) or (pool, idx, hit) or None
        For the ranking losses: ``pool`` (K,) distinct item ids and ``idx``
        (nnz, n_negatives) positions in ``pool``; the negatives of stored
        entry ``e`` are ``pool[idx[e]]``. A negative the user has rated is
        ignored: ``hit`` (nnz,) gives the position in ``pool`` of each stored
        entry's item, -1 if absent (found from ``pool`` when not given; given
        when the pool's rows are copies of items, see ``_Batch(local=True)``).
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
    P, beta, U, r0 = _user_vectors(batch, params, mu, shrinkage)
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
    """:func:`_loss_and_grad` with each stored entry left out of its own profile.

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


def _draw_pool(n_items, size, gen, device):
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


def _pool_columns(batch, pool):
    """The pool's columns in a local batch (the spare ones after the batch's items)."""
    start = batch.items.shape[0]
    return torch.arange(start, start + pool.shape[0], device=pool.device)


def _pool_hits(batch, pool):
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


def _svd_init(X, params, std, seed, device, dtype, values=False, shrinkage=0.0):
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


# ------------------------------------------------------------------------ estimator
class AsySVD(BaseRecommender):
    r"""Asymmetric SVD (Koren 2008): users folded in from the items they rated.

    A user has no factors of their own: the vector of a user ``u`` with
    rated items ``R(u)`` (ratings ``r_uj``) is built from item weights,

    .. math::

        p_u = |R(u)|^{-1/2} \sum_{j \in R(u)} (r_{uj} - b_{uj})\, x_j
              + |R(u)|^{-1/2} \sum_{j \in R(u)} y_j, \qquad
        \hat r_{ui} = b_{ui} + q_i^\top p_u,

    with ``b_ui = mu + b_u + b_i`` (Koren, "Factorization meets the
    neighborhood", KDD 2008, Sec. 4, with ``N(u) = R(u)``). ``mu`` is the
    mean of the stored values, ``b_i`` is learned, and the user bias is the
    closed-form regularised mean of the user's residuals (Koren's Sec. 2.1)

    .. math::

        b_u = \frac{\sum_{j \in R(u)} (r_{uj} - \mu - b_j)}
                   {\lambda_u + |R(u)|},

    so that every user, seen in ``fit`` or new, is folded in exactly and
    instantly by the same formula (``transform`` of a training row gives the
    trained prediction). An empty row gets ``p_u = 0`` and ``b_u = 0``
    (prediction ``mu + b_i``). With ``use_bias=False`` the model is the PoliMi
    course's simplified AsySVD: no biases, no x-term,
    ``r_ui = q_i . |R(u)|^-1/2 sum_{j in R(u)} y_j``.

    Losses, summed over the stored entries ``(u, i)`` of ``X``:

    - ``"mse"``: ``(r_ui - rhat_ui)^2`` (ratings);
    - ``"bpr"``: ``-log sigmoid(rhat_ui - rhat_uj)`` for ``n_negatives``
      sampled items ``j`` the user has not rated (Rendle et al. 2009);
    - ``"mse_neg"``: ``(r_ui - rhat_ui)^2 + sum_j rhat_uj^2``, the sampled
      negatives as zero ratings (the course's implicit-feedback loss).

    plus ``regularization`` times the squared norms of the parameters of each
    item in each term (``q_i, x_i, y_i, b_i`` per stored entry, ``q_j, b_j``
    per sampled negative), as per-sample SGD regularises. Negatives of a batch
    are drawn uniformly from a shared pool of ``min(n_items, 1024)`` distinct
    items drawn uniformly (so each negative is uniform over the items), which
    turns their scores into one dense product.

    With ``leave_one_out`` each stored entry ``(u, i)`` is predicted during
    training from ``R(u) - {i}`` (and ``b_u`` from it), as FISM does (Kabbur,
    Ning and Karypis, KDD 2013): training then matches the prediction of an
    item the user has not rated, and the self-weight ``q_i . y_i`` cannot
    memorise the data. Ranking losses need it (without it BPR learns a large
    ``q_i . y_i``); it changes only training, never the model's formula.

    Training is user-batched in torch on ``device``: a batch of
    ``batch_size`` users is one sparse matrix, their vectors one
    sparse-dense product, the predictions at all their stored entries one
    sampled dense-dense product, and the exact gradients (written by hand:
    the ``|R(u)|^-1/2`` factor reaching ``x_j`` and ``y_j``, and the
    dependence of ``b_u`` and of the x-term weights on ``b_j``) further
    sparse products, applied with Adam (Kingma and Ba 2015). There is no
    Python loop per user or per interaction. A step gathers the parameter
    rows of its users' items (and of its negatives' pool), renumbered, and
    updates only those rows: Adam is lazy, as ``torch.optim.SparseAdam``
    (the moments of items absent from a step are left as they are, the bias
    correction counts every step), so the time and memory of a step grow
    with the batch, not with the catalogue (a 1,000,000-item model trains
    in bounded memory).

    Growing: :meth:`partial_fit` runs one epoch on the rows of a new ``X``
    from the current item parameters, with new items (more columns)
    initialised as in ``fit`` and new users (more rows) folded in;
    ``warm_start=True`` makes ``fit`` start from the current parameters.
    Data-parallel: when a ``torch.distributed`` process group is initialised
    (``torchrun``, :func:`sksvd.distributed.spawn`), or with
    ``distributed=True``, the users are sharded over the ranks and the item
    gradients summed (:mod:`sksvd.distributed`): the result is a
    single-process fit with the same ``batch_size``, held by every rank.

    ``profile_weights="value"`` makes the y-term a weighted sum,
    ``p_u = |R(u)|^-1/2 sum_{j in R(u)} r_uj y_j`` (the stored values, e.g.
    ratings, as in PureSVD's fold-in ``x_u V``); the default sums the
    ``y_j`` unweighted (Koren's ``N(u)``). ``init="svd"`` starts from
    PureSVD (Cremonesi, Koren and Turrin 2010) of the matrix the y-term sums
    (``X``'s 0/1 pattern, or ``X`` with ``profile_weights="value"``):
    ``q = y = c V_k``, ``x = 0``, ``b = 0`` with ``V_k`` its top right
    singular vectors and ``c = init_std * sqrt(n_items)``, so that before any
    step the scores are ``c^2 |R(u)|^-1/2 x_u V_k V_k^T`` (plus ``b_u``):
    every user's items rank exactly as PureSVD ranks them; training then
    fine-tunes that model (Rendle et al.'s BPR from a PureSVD start).

    Defaults. With no argument the model is trained for top-N lists:
    ``loss="bpr"``, and the parameters left at ``"auto"`` resolve to the
    y-term model weighted by the ratings (``use_bias=False``,
    ``profile_weights="value"``) started from PureSVD with its spectrum
    shrunk (``init="svd"``, ``init_shrinkage=1e4``, ``init_std=1``) and
    fine-tuned at a small step (``learning_rate=3e-4``). On validation splits
    of MovieLens 100K ``u1.base`` (20% of each user's ratings held out, those
    rated >= 4 relevant, NDCG@10), the shrunk start carried the quality:
    BPR or sampled zeros from a random start, or at larger steps, ranked
    below it, and the small step keeps it (see
    ``benchmarks/bench_topn.py`` for the comparison with PureSVD and EASE).
    Tuning for top-N lists, a grid of 6 points for ``GridSearchCV`` with
    :func:`sksvd.model_selection.make_topk_scorer` on the training matrix:
    ``{"n_components": [64, 128], "init_shrinkage": [3e3, 1e4, 3e4]}``
    (``benchmarks/bench_topn.py``).
    ``loss="mse"`` turns the same ``"auto"`` parameters into Koren's rating
    model (biases, x- and y-terms, unweighted y-term, random start with
    ``init_std=0.05``, ``learning_rate=0.003``), whose defaults were chosen
    for RMSE on a validation split of ``u1.base``. ``predict_ratings``
    needs ``loss="mse"``: the ranking losses learn scores, not ratings.

    Parameters
    ----------
    n_components : int, default=64
        Dimension ``d`` of the factors.
    n_epochs : int, default=20
    learning_rate : float or "auto", default="auto"
        Adam's step size; "auto" is 0.003 for ``loss="mse"``, 3e-4 for the
        ranking losses.
    regularization : float, default=0.3
        L2 weight ``lambda`` per item occurrence (see above).
    loss : {"bpr", "mse", "mse_neg"}, default="bpr"
    n_negatives : int, default=4
        Sampled negatives per stored entry (``"bpr"`` and ``"mse_neg"``).
    use_bias : bool or "auto", default="auto"
        Koren's full model (biases, x- and y-terms); False gives the course's
        simplified model (y-term only, no biases). "auto" is True for
        ``loss="mse"``, False for the ranking losses.
    leave_one_out : bool or "auto", default="auto"
        Train each stored entry without its own item in the profile (see
        above); "auto" is True for the ranking losses, False for "mse".
    confidence : {"uniform", "value"}, default="uniform"
        How much each stored entry weighs in the loss: 1 ("uniform", Koren's
        and Rendle's losses), or its stored value ("value"), which then
        multiplies the entry's squared error, its BPR pairs and its sampled
        negatives (regularisation is not weighted), like the confidences of
        Hu, Koren and Volinsky (ICDM 2008). With ``use_bias=False`` the values
        enter the model nowhere else, so ``X`` can carry confidences, e.g.
        1 for items rated 4 or 5 and 0.1 for the others.
    profile_weights : {"auto", "ones", "value"}, default="auto"
        Weights of the items in the y-term: 1 (Koren's implicit term over
        ``N(u) = R(u)``) or the stored values ``r_uj`` (see above). The same
        weights serve training, ``transform`` and every fold-in. "auto" is
        "ones" for ``loss="mse"``, "value" for the ranking losses.
    user_bias_shrinkage : float, default=25.0
        ``lambda_u`` of the closed-form user bias.
    init : {"auto", "random", "svd"}, default="auto"
        "auto" is "random" for ``loss="mse"``, "svd" for the ranking losses.
        "random": ``q, x, y`` normal with standard deviation ``init_std``,
        ``b = 0``. "svd": PureSVD's item factors (see above; computed as
        :class:`~sksvd.recommenders.SVDRecommender` does, on the training
        part when ``early_stopping``), scaled so their entries' root mean
        square is ``init_std``; factors beyond ``min(n_users, n_items)``
        stay random. Not available with ``distributed`` training; ignored
        when ``warm_start`` or ``partial_fit`` continue a fitted model.
    init_shrinkage : float, default=1e4
        ``lambda`` of the spectral shrinkage of the ``init="svd"`` start
        (see :class:`~sksvd.recommenders.SVDRecommender`); 0 starts from
        plain PureSVD.
    init_std : float or "auto", default="auto"
        Standard deviation of the normal initialisation of ``q, x, y`` (the
        root mean square of the entries of ``q`` with ``init="svd"``);
        "auto" is 0.05 for the random start, 1.0 for the SVD start (Adam's
        steps are of about ``learning_rate`` per entry whatever their size,
        so the start's scale sets how far a step moves it).
    batch_size : int, default=128
        Users per batch (one Adam step each). Larger batches run faster per
        epoch on big data (fewer steps over the item tables) but take fewer
        steps per epoch.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the stored entries; stop when the
        validation score (RMSE for ``"mse"``, sampled AUC otherwise) has not
        improved for ``n_iter_no_change`` epochs and keep the best epoch.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=5
    callback : callable ``f(epoch, loss)``, default=None
        Called after each epoch; an exception raised there stops ``fit``
        and leaves the estimator as it was before.
    warm_start : bool, default=False
        When fitted already, ``fit`` starts from the current item parameters
        (and keeps ``global_mean_``) instead of a fresh initialisation; ``X``
        may have more rows and columns (new items start as in a fresh fit),
        ``loss_curve_`` and ``n_epochs_`` continue. ``n_components`` and
        ``use_bias`` must be unchanged.
    distributed : {"auto", True, False}, default="auto"
        Data-parallel training under ``torch.distributed``: "auto" when a
        process group is initialised, True to require one (initialised here
        from the ``torchrun`` variables if needed), False never. Every rank
        passes an ``X`` of the same shape; rank ``r`` trains on the users
        ``u % world_size == r`` and ignores the other rows. ``batch_size`` is
        the effective (summed over ranks) number of users per step. See
        :mod:`sksvd.distributed`.
    device : str, default="auto"
    dtype : str, default="float32"
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, the batches and the negatives; on CPU the
        same seed gives the same model bit for bit.
    verbose : int, default=0
        A progress bar with the loss when > 0.

    Attributes
    ----------
    item_factors_ : ndarray of shape (n_items, n_components)
        ``q_i``.
    item_weights_ : ndarray of shape (n_terms, n_items, n_components)
        With ``use_bias=True``: ``item_weights_[0]`` is ``x`` (weights of the
        residuals) and ``item_weights_[1]`` is ``y`` (implicit weights);
        with ``use_bias=False`` only ``y`` (``n_terms=1``).
    user_factors_ : ndarray of shape (n_users, n_components)
        ``p_u`` of the fitted users (from their rows of ``X``).
    global_mean_ : float
        ``mu`` (``use_bias=True`` only).
    user_bias_ : ndarray of shape (n_users,)
        ``b_u`` of the fitted users (``use_bias=True`` only).
    item_bias_ : ndarray of shape (n_items,)
        ``b_i`` (``use_bias=True`` only).
    loss_curve_ : list of float
        Objective per stored entry, per epoch.
    validation_scores_ : list of float
        Per epoch, with ``early_stopping``.
    n_epochs_ : int
        Epochs run (summed over ``partial_fit`` calls and warm starts).
    n_users_, n_items_, n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd.recommenders import AsySVD
    >>> X = np.array([[5, 4, 0, 1], [4, 5, 1, 0], [0, 1, 5, 4], [1, 0, 4, 5]])
    >>> rec = AsySVD(n_components=4, n_epochs=50, learning_rate=0.05,
    ...              random_state=0, device="cpu").fit(X)
    >>> rec.transform(np.array([[5, 0, 0, 0]])).shape
    (1, 4)
    >>> float(rec.predict(np.array([[5, 5, 0, 0]]))[0, 2]) < 3  # a new user
    True
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "regularization": [Interval(numbers.Real, 0, None, closed="left")],
        "loss": [StrOptions({"mse", "bpr", "mse_neg"})],
        "n_negatives": [Interval(numbers.Integral, 1, None, closed="left")],
        "use_bias": ["boolean", StrOptions({"auto"})],
        "leave_one_out": ["boolean", StrOptions({"auto"})],
        "confidence": [StrOptions({"uniform", "value"})],
        "user_bias_shrinkage": [Interval(numbers.Real, 0, None, closed="left")],
        "profile_weights": [StrOptions({"auto", "ones", "value"})],
        "init": [StrOptions({"auto", "random", "svd"})],
        "init_shrinkage": [Interval(numbers.Real, 0, None, closed="left")],
        "init_std": [Interval(numbers.Real, 0, None, closed="left"), StrOptions({"auto"})],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
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

    def __init__(self, n_components=64, *, n_epochs=20, learning_rate="auto",
                 regularization=0.3, loss="bpr", n_negatives=4, use_bias="auto",
                 leave_one_out="auto", confidence="uniform", profile_weights="auto",
                 user_bias_shrinkage=25.0, init="auto", init_shrinkage=10000.0, init_std="auto",
                 batch_size=128,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=5,
                 callback=None, warm_start=False, distributed="auto", device="auto",
                 dtype="float32", random_state=None, verbose=0):
        self.n_components = n_components
        self.n_epochs = n_epochs
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.loss = loss
        self.n_negatives = n_negatives
        self.use_bias = use_bias
        self.leave_one_out = leave_one_out
        self.confidence = confidence
        self.profile_weights = profile_weights
        self.user_bias_shrinkage = user_bias_shrinkage
        self.init = init
        self.init_shrinkage = init_shrinkage
        self.init_std = init_std
        self.batch_size = batch_size
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

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Fit the model to a users x items matrix of ratings or interactions.

        On any exception (a diverging learning rate, a ``callback`` that
        raises, ``KeyboardInterrupt``) the estimator is left exactly as it
        was before the call.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Stored entries are the ratings ``r_ui``; zeros mean "not rated".
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        return super().fit(X, y)  # the base class restores the state on any exception

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """One epoch over the rows of ``X``, continuing from the current item parameters.

        Row ``u`` of ``X`` is user ``u`` and column ``i`` item ``i`` of the
        fitted model; ``X`` may have more rows (new users) and more columns
        (new items, initialised as in ``fit``; ``global_mean_`` is kept). An
        AsySVD user *is* the set of items they rated, so a row of ``X`` is
        taken as that user's whole profile: for a user seen before, pass
        their old and new interactions (a row with the new ones only trains
        and folds them in as if those were all). ``user_factors_`` and
        ``user_bias_`` are refreshed for the rows with entries in ``X`` and
        kept for the others. On an unfitted estimator it initialises as
        ``fit`` does and runs one epoch. ``early_stopping`` is not used.
        Adam's moments and step count carry over from the previous call (in
        memory and in pickles; :func:`sksvd.io.save` stores the model only,
        so after :func:`sksvd.io.load` they restart). An exception leaves the
        estimator exactly as before the call.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Users' rows; ``n_items`` >= the fitted ``n_items_``.
        y : None
            Ignored.

        Returns
        -------
        self : AsySVD

        Examples
        --------
        >>> import numpy as np
        >>> from sksvd.recommenders import AsySVD
        >>> rec = AsySVD(n_components=2, random_state=0, device="cpu")
        >>> rec = rec.partial_fit(np.array([[5, 4, 0], [4, 0, 1]]))
        >>> rec = rec.partial_fit(np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 5]]))
        >>> rec.user_factors_.shape, rec.item_factors_.shape, rec.n_epochs_
        ((3, 2), (4, 2), 2)
        """
        with self._restored_on_error():
            X = check_growing_interactions(self, X)
            self._fit(X, partial=True)
            return self

    def _start_state(self):
        """The fitted item parameters (numpy, by name) and ``mu``, to continue from."""
        d, biased = int(self.n_components), self._use_bias()
        weights = self.item_weights_
        if self.item_factors_.shape[1] != d:
            raise ValueError(
                f"n_components={d}: the fitted model has {self.item_factors_.shape[1]}; "
                "warm_start and partial_fit continue it, so it must stay the same")
        if (weights.shape[0] == 2) != biased:
            raise ValueError(
                f"use_bias={self.use_bias!r}: the fitted model was trained with "
                f"use_bias={weights.shape[0] == 2}; warm_start and partial_fit continue it")
        start = {"q": self.item_factors_, "y": weights[-1]}
        if biased:
            start.update(x=weights[0], b=self.item_bias_)
        return start, float(getattr(self, "global_mean_", 0.0))

    def _fit(self, X, partial=False):
        device, dtype = self._device(), self._dtype()
        dist = resolve_distributed(self.distributed, device)
        continued = (partial or self.warm_start) and hasattr(self, "item_factors_")
        start, mu = self._start_state() if continued else (None, None)
        shape = X.shape
        if continued:
            shape = (max(shape[0], self.user_factors_.shape[0]),
                     max(shape[1], self.item_factors_.shape[0]))
        if dist:
            lo, hi = allreduce_values(shape, op="min"), allreduce_values(shape, op="max")
            if (lo != hi).any():
                raise ValueError(f"X: shape {X.shape} on rank {get_rank()}, but the ranks' "
                                 f"shapes range from {tuple(lo.astype(int))} to "
                                 f"{tuple(hi.astype(int))}; every rank passes the same shape")
            X = shard_rows(X)
        X = grow(X, shape)
        nnz = int(allreduce_values([X.nnz])[0]) if dist else X.nnz
        if nnz == 0:
            raise ValueError("X: no stored entries (all zeros); AsySVD needs some ratings")
        seed = seed_from_random_state(self.random_state)
        if continued:  # successive calls draw new batches, and repeat
            seed = call_seed(seed, self.n_epochs_)
        # ``rng`` orders the batches (the same on every rank); ``local_rng`` draws this
        # rank's own batches and validation split (one generator when not distributed).
        rng = np.random.default_rng(seed)
        local_rng = np.random.default_rng(rank_seed(seed)) if dist else rng
        d, n_items = int(self.n_components), X.shape[1]
        biased = self._use_bias()

        X_val = None
        if self.early_stopping and not partial:
            X, X_val = validation_split(X, self.validation_fraction, local_rng)
            n_fit, n_val = ((int(v) for v in allreduce_values([X.nnz, X_val.nnz])) if dist
                            else (X.nnz, X_val.nnz))
            if n_fit == 0 or n_val == 0:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction!r}: leaves an empty "
                    f"training or validation part ({n_fit + n_val} stored entries)")
        if not biased:
            mu = 0.0
        elif mu is None and dist:
            total, count = allreduce_values([np.sum(X.data, dtype=np.float64), X.nnz])
            mu = float(total / count)
        elif mu is None:
            mu = float(X.data.mean())

        init = torch.Generator().manual_seed(seed)
        std = self._init_std()
        names = ["q", "x", "y", "b"] if biased else ["q", "y"]
        params = {}
        # x and y live in one (n_terms, n_items, d) tensor: item_weights_ without a copy.
        weights = torch.empty((2 if biased else 1, n_items, d), dtype=dtype,
                              device=device)
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
        if self._init() == "svd" and start is None:
            if dist:
                raise ValueError("init='svd': not available with distributed training (each "
                                 "rank holds only its users); use init='random'")
            _svd_init(X, params, std, seed, device, dtype,
                      values=self._profile_weights() == "value",
                      shrinkage=float(self.init_shrinkage))
        opt = _Adam(params, self._learning_rate())
        if continued and getattr(self, "_optimizer_state", None) is not None:
            opt.load(self._optimizer_state)

        users = local_rng.permutation(np.flatnonzero(np.diff(X.indptr)))
        bs = int(self.batch_size)
        if dist:
            # Every rank takes the same number of steps, ~batch_size / world_size users each.
            n_steps = max(1, -(-int(allreduce_values([users.size])[0]) // bs))
            chunks = np.array_split(users, n_steps)
        else:
            chunks = [users[s:s + bs] for s in range(0, users.size, bs)]
        ranking = self.loss != "mse"
        n_neg, pool_size = int(self.n_negatives), min(n_items, _POOL_SIZE)
        extra = pool_size if ranking else 0
        weighted = self._profile_weights() == "value"
        batches = [_Batch(X[c], device, dtype, local=True, extra=extra, weighted=weighted)
                   for c in chunks]
        # A step's gradient is divided by its entries over all ranks.
        step_nnz = np.array([b.nnz for b in batches], dtype=np.float64)
        if dist:
            step_nnz = allreduce_values(step_nnz)
        gen = make_generator(rank_seed(seed) if dist else seed, device)
        loo = self.leave_one_out
        cfg = dict(mu=mu, regularization=float(self.regularization),
                   shrinkage=float(self.user_bias_shrinkage), loss=self.loss,
                   leave_one_out=ranking if loo == "auto" else bool(loo),
                   confidence=self.confidence == "value")

        def epoch_fn(epoch):
            total, count = 0.0, 0
            for k in rng.permutation(len(batches)):
                batch = batches[k]
                if step_nnz[k] == 0:  # no rank has a user left for this step
                    continue
                negatives, rows = None, batch.items
                if ranking and batch.nnz:
                    pool = _draw_pool(n_items, pool_size, gen, device)
                    idx = torch.randint(0, pool_size, (batch.nnz, n_neg), generator=gen,
                                        device=device)
                    negatives = (_pool_columns(batch, pool), idx, _pool_hits(batch, pool))
                    rows = torch.cat([rows, pool])
                with torch.no_grad():
                    # Only the rows of the batch's items and of its pool take part
                    # (gathered: a step costs the batch, not the catalogue).
                    local = {n: p[rows] for n, p in params.items()}
                    if batch.nnz:
                        value, grads = _loss_and_grad(local, batch, negatives=negatives, **cfg)
                    else:
                        value, grads = 0.0, {n: torch.zeros_like(g) for n, g in local.items()}
                    if dist:
                        rows, grads = _allreduce_rows(rows, grads, n_items)
                    opt.step_rows(rows, grads, 1.0 / step_nnz[k])
                total += value
                count += batch.nnz
            if dist:
                total, count = allreduce_values([total, count])
            return total / count

        validate_fn = None
        if X_val is not None:
            validate_fn = self._make_validation(X, X_val, params, mu, device, dtype, local_rng,
                                                dist)

        def snapshot():
            return {k: v.clone() for k, v in params.items()}

        def restore(state):
            for k, v in state.items():
                params[k].copy_(v)

        losses, scores = run_epochs(
            epoch_fn, 1 if partial else int(self.n_epochs), learning_rate=self._learning_rate(),
            validate_fn=validate_fn, n_iter_no_change=int(self.n_iter_no_change),
            higher_is_better=ranking, callback=self.callback, verbose=self.verbose,
            desc="AsySVD", snapshot_fn=snapshot, restore_fn=restore)

        # Training completed: only now are the fitted attributes written.
        batches.clear()  # (memory for the users' fold-in below)
        np_dtype = numpy_dtype(dtype)
        if continued:
            losses = list(self.loss_curve_) + losses
            if X_val is not None and getattr(self, "validation_scores_", None) is not None:
                scores = list(self.validation_scores_) + scores
            old_users = (self.user_factors_, getattr(self, "user_bias_", None))
        fitted = {
            "item_factors_": to_numpy(params["q"], dtype=np_dtype),
            "item_weights_": to_numpy(weights, dtype=np_dtype),
            "loss_curve_": losses,
            "n_epochs_": len(losses),
            "_optimizer_state": opt.state(),
        }
        if biased:
            fitted["global_mean_"] = mu
            fitted["item_bias_"] = to_numpy(params["b"], dtype=np_dtype)
        if X_val is not None:
            fitted["validation_scores_"] = scores
        for name in ("global_mean_", "item_bias_", "user_bias_", "validation_scores_"):
            self.__dict__.pop(name, None)
        self.__dict__.update(fitted)
        self.n_users_, self.n_items_ = X.shape
        self.n_features_in_ = X.shape[1]
        # The fitted users' vectors and biases, from their full training rows.
        X_full = X if X_val is None else X + X_val
        W, B = [], []
        for s, e in self._batches(X_full.shape[0], None):
            w, c = self._fold_in(X_full[s:e], device, dtype)
            W.append(to_numpy(w, dtype=np_dtype))
            if c is not None:
                B.append(to_numpy(c, dtype=np.float64) - mu)
        user_factors = np.concatenate(W) if W else np.zeros((0, d), np_dtype)
        user_bias = (np.concatenate(B) if B else np.zeros(0)) if biased else None
        seen = np.diff(X_full.indptr) > 0
        if dist:  # each user's row comes from its own rank (zeros elsewhere)
            parts = [torch.from_numpy(user_factors), torch.from_numpy(seen.astype(np.int64))]
            if biased:
                parts.append(torch.from_numpy(user_bias))
            allreduce_(parts)
            seen = seen | (parts[1].numpy() > 0)
        if continued:  # users without a row in X keep their vectors
            keep = ~seen[:old_users[0].shape[0]]
            n_old = keep.size
            user_factors[:n_old][keep] = old_users[0][keep]
            if biased:
                user_bias[:n_old][keep] = old_users[1][keep]
        self.user_factors_ = user_factors
        if biased:
            self.user_bias_ = user_bias

    def _make_validation(self, X, X_val, params, mu, device, dtype, rng, dist=False):
        """Validation score: RMSE (mse) or sampled AUC (ranking losses) of held-out entries.

        Data-parallel, the sums are taken over every rank's held-out entries.
        """
        rows = np.flatnonzero(np.diff(X_val.indptr))
        train = _Batch(X[rows], device, dtype, transposed=False,
                       weighted=self._profile_weights() == "value")
        val = X_val[rows].tocoo()
        r = torch.from_numpy(val.row.astype(np.int64)).to(device)
        i = torch.from_numpy(val.col.astype(np.int64)).to(device)
        target = torch.from_numpy(val.data).to(device=device, dtype=dtype)
        j = torch.from_numpy(rng.integers(0, X.shape[1], size=val.nnz)).to(device)
        cfg = (mu, float(self.user_bias_shrinkage))
        biased = "x" in params

        def score(items):
            P, beta, _, _ = _user_vectors(train, params, mu, cfg[1])
            s = (P[r] * params["q"][items]).sum(1)
            if biased:
                s = s + mu + beta[r] + params["b"][items]
            return s

        def validate():
            with torch.no_grad():
                if not dist:
                    if self.loss == "mse":
                        err = score(i) - target
                        return float(torch.sqrt(torch.mean(err * err)))
                    return float((score(i) > score(j)).to(torch.float64).mean())
                total = 0.0
                if val.nnz and self.loss == "mse":
                    total = float(torch.sum((score(i) - target) ** 2, dtype=torch.float64))
                elif val.nnz:
                    total = float((score(i) > score(j)).to(torch.float64).sum())
                total, count = allreduce_values([total, val.nnz])
                return float(np.sqrt(total / count)) if self.loss == "mse" else total / count

        return validate

    # ------------------------------------------------ loss-dependent defaults
    def _use_bias(self):
        return self.loss == "mse" if self.use_bias == "auto" else bool(self.use_bias)

    def _init(self):
        if self.init == "auto":
            return "random" if self.loss == "mse" else "svd"
        return self.init

    def _learning_rate(self):
        if self.learning_rate == "auto":
            return 0.003 if self.loss == "mse" else 3e-4
        return float(self.learning_rate)

    def _init_std(self):
        if self.init_std == "auto":
            return 0.05 if self._init() == "random" else 1.0
        return float(self.init_std)

    def _profile_weights(self):
        if self.profile_weights == "auto":
            return "ones" if self.loss == "mse" else "value"
        return self.profile_weights

    # -------------------------------------------------------------- fold-in
    def _fold_in(self, X, device, dtype):
        params = {"q": None}
        weights = device_array(self, "item_weights_", device, dtype)  # once per fit
        params["y"] = weights[-1]
        mu = 0.0
        if weights.shape[0] == 2:
            params["x"] = weights[0]
            params["b"] = device_array(self, "item_bias_", device, dtype)
            mu = float(self.global_mean_)
        batch = _Batch(X, device, dtype, transposed=False,
                       weighted=self._profile_weights() == "value")
        P, beta, _, _ = _user_vectors(batch, params, mu, float(self.user_bias_shrinkage))
        return P, (None if beta is None else beta + mu)

    # ------------------------------------------------------- explain hook
    def _fold_in_terms(self, x):
        """:meth:`_fold_in` of one row as a sum over its rated items (for ``explain``).

        With ``n = |R(u)|``, ``s = n^-1/2``, ``w_j`` the y-term weights and,
        with biases, ``resid_j = r_j - mu - b_j`` and ``t_j = resid_j /
        (user_bias_shrinkage + n)`` (so ``b_u = sum_j t_j``):
        ``p_u = s sum_j (resid_j x_j + w_j y_j - t_j sum_k x_k)`` and
        ``c_u = mu + sum_j t_j``. Returns ``(W_terms, c_terms, W0, c0)`` in
        float64: item ``j``'s share of ``p_u`` and of ``c_u``, and the rest.
        """
        cols = x.indices
        r = np.asarray(x.data, dtype=np.float64)
        n = cols.size
        weights = np.asarray(self.item_weights_, dtype=np.float64)
        s = 1.0 / np.sqrt(n) if n else 0.0
        # the y-term weights the fold-in uses (a "auto" setting resolved as there)
        weighting = getattr(self, "_profile_weights", lambda: self.profile_weights)()
        w = r if weighting == "value" else np.ones(n)
        terms = s * w[:, None] * weights[-1][cols]
        W0 = np.zeros(weights.shape[2])
        if weights.shape[0] == 1:
            return terms, None, W0, 0.0
        mu = float(self.global_mean_)
        x_rated = weights[0][cols]
        resid = r - mu - np.asarray(self.item_bias_, dtype=np.float64)[cols]
        share = resid / (float(self.user_bias_shrinkage) + n) if n else resid
        terms += s * (resid[:, None] * x_rated - share[:, None] * x_rated.sum(0))
        return terms, share, W0, mu


class _Adam:
    """Adam (Kingma and Ba 2015) on a dict of tensors, in place.

    Written out rather than ``torch.optim.Adam`` because the latter's first
    step costs seconds of one-off imports, which dominates small fits.
    """

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = {k: torch.zeros_like(v) for k, v in params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def state(self):
        """The moments (numpy, by parameter) and the step count.

        On the CPU the arrays share the moments' memory (no copy of two
        model-sized tables at the end of a fit): take the state when the
        optimizer is done.
        """
        return {"t": self.t,
                "m": {k: to_numpy(v) for k, v in self.m.items()},
                "v": {k: to_numpy(v) for k, v in self.v.items()}}

    def load(self, state):
        """Continue from :meth:`state`; rows beyond its arrays (new items) start at zero."""
        self.t = int(state["t"])
        for name in ("m", "v"):
            for k, t in getattr(self, name).items():
                old = state[name][k]
                t[:old.shape[0]] = torch.as_tensor(old).to(device=t.device, dtype=t.dtype)

    def step_rows(self, rows, grads, scale=1.0):
        """A lazy Adam step on the parameter rows ``rows`` only (as ``torch.optim.SparseAdam``).

        ``grads[k]`` holds the gradient of ``params[k][rows]``; rows listed
        more than once have their gradients summed. The other rows, and their
        moments, are left as they are; the bias correction uses the global
        step count.
        """
        uniq, inv = torch.unique(rows, return_inverse=True)
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        root_c2 = c2**0.5
        dup = not torch.equal(uniq, rows)  # repeated or unsorted rows
        for k, p in self.params.items():
            g = grads[k]
            if dup:  # summed per distinct row, in the order of ``uniq``
                g = torch.zeros((uniq.shape[0],) + g.shape[1:], dtype=g.dtype,
                                device=g.device).index_add_(0, inv, g)
            m, v = self.m[k][uniq], self.v[k][uniq]
            m.mul_(b1).add_(g, alpha=(1.0 - b1) * scale)
            v.mul_(b2).addcmul_(g, g, value=(1.0 - b2) * scale * scale)
            self.m[k][uniq] = m
            self.v[k][uniq] = v
            denom = torch.sqrt(v).add_(self.eps * root_c2)
            p.index_add_(0, uniq, m.div_(denom), alpha=-self.lr * root_c2 / c1)
