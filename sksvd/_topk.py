"""The one top-k routine: batched factor scores, seen items masked, torch top-k.

Every recommender's ``recommend``, the scorers and the benchmarks' baselines
(scipy-svds PureSVD, implicit's factors, most-popular) rank items here, so
that all of them are ranked and tie-broken the same way.
"""

from __future__ import annotations

import numpy as np
import torch

from ._backend import resolve_device, to_numpy, to_torch

__all__ = ["topk_items", "default_batch_size", "mask_seen_"]

# Elements of the (batch, n_items) score block: 2**24 floats = 64 MiB in float32.
_BLOCK_ELEMENTS = 2**24


def default_batch_size(n_items, block_elements=_BLOCK_ELEMENTS):
    """Rows per batch so that one (rows, n_items) score block holds ``block_elements``.

    Examples
    --------
    >>> from sksvd._topk import default_batch_size
    >>> default_batch_size(2**20)
    16
    """
    return max(1, int(block_elements) // max(1, int(n_items)))


def mask_seen_(scores, seen, value=-torch.inf):
    """Set ``scores[u, i] = value`` in place wherever ``seen`` (CSR, same rows) stores an entry.

    Parameters
    ----------
    scores : torch.Tensor of shape (n_rows, n_items)
    seen : scipy.sparse.csr_matrix of shape (n_rows, n_items)

    Examples
    --------
    >>> import torch, scipy.sparse as sp
    >>> from sksvd._topk import mask_seen_
    >>> mask_seen_(torch.zeros(1, 3), sp.csr_matrix([[0, 1, 0]]))
    tensor([[0., -inf, 0.]])
    """
    if seen is None or seen.nnz == 0:
        return scores
    counts = np.diff(seen.indptr)
    rows = torch.from_numpy(np.repeat(np.arange(seen.shape[0], dtype=np.int64), counts))
    cols = torch.from_numpy(np.asarray(seen.indices, dtype=np.int64))
    scores[rows.to(scores.device), cols.to(scores.device)] = value
    return scores


def topk_items(user_vectors, item_factors, k, *, seen=None, user_offset=None, item_offset=None,
               n_rows=None, batch_size=None, device="cpu", dtype=torch.float32):
    """Top-``k`` items of ``user_vectors @ item_factors.T (+ offsets)``, in batches.

    The full (n_users, n_items) score matrix is never built: rows are scored
    ``batch_size`` at a time on ``device``, seen items are set to ``-inf``,
    and :func:`torch.topk` keeps the best ``k`` (ties broken by torch's
    ``topk``, identically whatever the batch size). Where a row has fewer
    than ``k`` unseen items, the missing places are padded with id ``-1`` and
    score ``-inf``.

    Parameters
    ----------
    user_vectors : ndarray or torch.Tensor of shape (n_users, d), or a callable
        A callable ``f(start, stop) -> (vectors, offset)`` produces the rows'
        vectors (and optional per-row offsets) batch by batch, so that
        fold-in is also done per batch.
    item_factors : ndarray or torch.Tensor of shape (n_items, d)
    k : int
    seen : scipy.sparse.csr_matrix of shape (n_users, n_items), default=None
        Items to exclude per row.
    user_offset : array of shape (n_users,), default=None
        Added to each row's scores (does not change the ranking).
    item_offset : array of shape (n_items,), default=None
        Added to each column's scores (e.g. item biases).
    n_rows : int, default=None
        Number of rows; needed only when ``user_vectors`` is a callable.
    batch_size : int, default=None
        Rows per batch; default keeps a score block at 64 MiB.
    device : str or torch.device, default="cpu"
    dtype : torch.dtype, default=torch.float32

    Returns
    -------
    ids : ndarray of shape (n_users, k), int64
    scores : ndarray of shape (n_users, k), float32

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd._topk import topk_items
    >>> ids, scores = topk_items(np.array([[1.0]]), np.array([[3.0], [1.0], [2.0]]), 2)
    >>> ids
    array([[0, 2]])
    """
    device = resolve_device(device)
    Q = to_torch(item_factors, device=device, dtype=dtype)
    n_items = Q.shape[0]
    d_off = None if item_offset is None else to_torch(item_offset, device=device, dtype=dtype)
    if callable(user_vectors):
        if n_rows is None:
            raise ValueError("n_rows: required when user_vectors is a callable")
        n_users = int(n_rows)
        fold = user_vectors
    else:
        U_all = user_vectors
        n_users = U_all.shape[0]

        def fold(start, stop):
            off = None if user_offset is None else user_offset[start:stop]
            return U_all[start:stop], off

    if batch_size is None:
        batch_size = default_batch_size(n_items)
    k_eff = min(int(k), n_items)
    ids_out = np.full((n_users, k), -1, dtype=np.int64)
    scores_out = np.full((n_users, k), -np.inf, dtype=np.float32)
    for start in range(0, n_users, batch_size):
        stop = min(start + batch_size, n_users)
        U, c_off = fold(start, stop)
        U = to_torch(U, device=device, dtype=dtype)
        S = U @ Q.T
        if d_off is not None:
            S += d_off
        if c_off is not None:
            S += to_torch(c_off, device=device, dtype=dtype)[:, None]
        if seen is not None:
            mask_seen_(S, seen[start:stop])
        vals, idx = torch.topk(S, k_eff, dim=1, largest=True, sorted=True)
        vals = to_numpy(vals, dtype=np.float32)
        idx = to_numpy(idx).astype(np.int64, copy=False)
        idx[~np.isfinite(vals)] = -1
        ids_out[start:stop, :k_eff] = idx
        scores_out[start:stop, :k_eff] = vals
    return ids_out, scores_out

