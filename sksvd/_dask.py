"""Randomized truncated SVD of a Dask array, block by block where the blocks live.

The matrix is split into row blocks (chunks along axis 0, one chunk along
axis 1); dense and scipy-sparse chunks are both accepted. Every product with
a block runs in torch on the worker's device (``device``); the small
(n_features x l) matrices travel, the row blocks never do. The algorithm is
the randomized range finder with power iterations of Halko, Martinsson and
Tropp (2011), the QR of the tall (n_samples x l) matrices done by Dask's
tall-skinny QR (:func:`dask.array.linalg.tsqr`, as
:func:`dask.array.linalg.svd_compressed` does), with ``n_iter="auto"``
stopping once a power iteration gains less than ``tol`` times the error left.
(The in-memory :func:`sksvd.linalg.randomized_svd` keeps the whole Krylov
space instead, whose basis would have to live on the workers here.)

Dask is an optional dependency (``pip install sksvd[dask]``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ._backend import make_generator, numpy_dtype, resolve_device, resolve_dtype, to_numpy, to_torch
from ._validation import MAX_ABS_VALUE

__all__ = ["is_dask_array", "dask_randomized_svd", "dask_squared_norm", "dask_column_stats",
           "dask_row_stats"]


def is_dask_array(X):
    """True when ``X`` is a :class:`dask.array.Array` (without importing dask otherwise).

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd._dask import is_dask_array
    >>> is_dask_array(np.eye(2))
    False
    """
    mod = type(X).__module__ or ""
    if not mod.startswith("dask"):
        return False
    import dask.array as da

    return isinstance(X, da.Array)


def _check_block(block):
    vals = block.data if sp.issparse(block) else np.asarray(block)
    if vals.size and not np.isfinite(vals).all():
        raise ValueError("X: a block of the Dask array contains NaN or infinity")
    if vals.size and np.abs(vals).max() > MAX_ABS_VALUE:
        raise ValueError(f"X: a block of the Dask array holds a value above {MAX_ABS_VALUE:.0e}")


def _block_matmul(block, B, device, dtype, transpose=False):
    """``block @ B`` (or ``block.T @ B``) in torch on ``device``; returns numpy."""
    _check_block(block)
    if transpose:
        block = block.T.tocsr() if sp.issparse(block) else np.asarray(block).T
    A = to_torch(block, device=device, dtype=dtype)
    Bt = to_torch(B, device=device, dtype=dtype)
    out = torch.sparse.mm(A, Bt) if A.layout != torch.strided else A @ Bt
    return to_numpy(out)


def _sq_norm_block(block):
    vals = block.data if sp.issparse(block) else np.asarray(block)
    return np.array([[float(np.square(vals, dtype=np.float64).sum())]])


def dask_squared_norm(X):
    """Exact ``||X||_F^2`` of a Dask array (dense or sparse chunks), as a float.

    Examples
    --------
    >>> import dask.array as da
    >>> from sksvd._dask import dask_squared_norm
    >>> dask_squared_norm(da.ones((4, 3), chunks=(2, 3)))
    12.0
    """
    X = X.rechunk({1: -1})
    parts = X.map_blocks(_sq_norm_block, chunks=((1,) * X.numblocks[0], (1,)),
                         dtype=np.float64)
    return float(parts.sum().compute())


def _stats_block(block, power, axis):
    """Stored nonzeros and sums of ``|x|^(2 power)`` along ``axis`` of one block, as two rows."""
    if sp.issparse(block):
        block = sp.csr_matrix(block)
        block.eliminate_zeros()
        nonzero = block.copy()
        nonzero.data = np.ones_like(nonzero.data, dtype=np.float64)
        sq = block.astype(np.float64)
        sq.data = np.abs(sq.data) ** (2 * power)
        counts, sums = nonzero.sum(axis=axis).A1, sq.sum(axis=axis).A1
    else:
        block = np.asarray(block, dtype=np.float64)
        counts = (block != 0).sum(axis=axis).astype(np.float64)
        sums = (np.abs(block) ** (2 * power)).sum(axis=axis)
    out = np.stack([counts, sums])
    return out[None] if axis == 0 else out.T[:, :, None]


def dask_column_stats(X, power=1.0):
    """Per column of a Dask array: stored nonzeros and the sum of ``|x|^(2 power)``.

    Returns
    -------
    counts, sq_sums : ndarray of shape (n_columns,), float64

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from sksvd._dask import dask_column_stats
    >>> counts, sq = dask_column_stats(da.from_array(np.array([[1, 0], [2, 0], [0, 3]]),
    ...                                              chunks=(2, 2)))
    >>> counts.tolist(), sq.tolist()
    ([2.0, 1.0], [5.0, 9.0])
    """
    X = X.rechunk({1: -1})
    parts = X.map_blocks(_stats_block, power, 0, new_axis=2,
                         chunks=((1,) * X.numblocks[0], (2,), (X.shape[1],)),
                         dtype=np.float64)
    counts, sums = parts.sum(axis=0).compute()
    return counts, sums


def dask_row_stats(X):
    """Per row of a Dask array: stored nonzeros and the sum of squares.

    Returns
    -------
    counts, sq_sums : ndarray of shape (n_rows,), float64

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from sksvd._dask import dask_row_stats
    >>> counts, sq = dask_row_stats(da.from_array(np.array([[1, 0], [2, 0], [0, 3]]),
    ...                                           chunks=(2, 2)))
    >>> counts.tolist(), sq.tolist()
    ([1.0, 1.0, 1.0], [1.0, 4.0, 9.0])
    """
    X = X.rechunk({1: -1})
    parts = X.map_blocks(_stats_block, 1.0, 1, new_axis=2,
                         chunks=(X.chunks[0], (2,), (1,)), dtype=np.float64)
    out = parts.compute()[:, :, 0]
    return out[:, 0], out[:, 1]


def _xt_times(X, Q, device, dtype):
    """``X.T @ Q`` for row-blocked X and Q: the sum of the blocks' (n, l) products."""
    import dask

    blocks = zip(X.to_delayed().ravel(), Q.to_delayed().ravel(), strict=True)
    parts = [dask.delayed(_block_matmul)(xb, qb, device, dtype, True) for xb, qb in blocks]
    while len(parts) > 1:  # a tree of pairwise sums, done where the parts are
        parts = [dask.delayed(np.add)(a, b) for a, b in zip(parts[::2], parts[1::2], strict=False)] + (
            [parts[-1]] if len(parts) % 2 else [])
    return parts[0]


def dask_randomized_svd(X, n_components, *, n_oversamples=10, n_iter="auto", tol=1e-2,
                        max_iter=20, random_state=None, device="cpu", dtype="float32",
                        return_info=False):
    """Randomized truncated SVD of a Dask array ``X`` of shape (m, n).

    Parameters
    ----------
    X : dask.array.Array of shape (m, n)
        Row-chunked (it is rechunked to one chunk along axis 1); chunks may be
        numpy arrays or scipy sparse matrices.
    n_components : int in [1, min(m, n)]
    n_oversamples : int, default=10
    n_iter : int or "auto", default="auto"
        Power iterations; "auto" stops once one gains less than ``tol`` times
        the rank-k error left.
    tol, max_iter :
        Stopping rule of ``n_iter="auto"``.
    random_state : int, RandomState or None
        The test matrix is the one the in-memory solver draws for this seed.
    device : str, default="cpu"
        Where each block's products run (on each worker).
    dtype : str or torch.dtype, default="float32"
    return_info : bool, default=False

    Returns
    -------
    U : ndarray (m, k), S : ndarray (k,), Vt : ndarray (k, n)  (and info)

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from sksvd._dask import dask_randomized_svd
    >>> A = np.outer(np.arange(1.0, 9.0), np.arange(1.0, 5.0))
    >>> U, S, Vt = dask_randomized_svd(da.from_array(A, chunks=(4, 4)), 1, random_state=0)
    >>> bool(np.isclose(S[0], np.linalg.norm(A), rtol=1e-5))
    True
    """
    import dask.array as da

    device = str(resolve_device(device))
    tdtype = resolve_dtype(dtype)
    X = X.rechunk({1: -1})
    m, n = X.shape
    k = int(n_components)
    if not 1 <= k <= min(m, n):
        raise ValueError(f"n_components={k}: expected an int in [1, {min(m, n)}]")
    ell = min(k + int(n_oversamples), m, n)
    gen = make_generator(random_state)
    omega = to_numpy(torch.randn(n, ell, generator=gen, dtype=tdtype))
    row_chunks = X.chunks[0]

    def times(B):  # X @ B, row-blocked (m, l)
        return X.map_blocks(_block_matmul, B, device, tdtype, chunks=(row_chunks, (ell,)),
                            dtype=np.float64)

    Q, _ = da.linalg.tsqr(times(omega))
    Q = Q.persist()
    total = dask_squared_norm(X) if n_iter == "auto" else None
    done, passes, prev = 0, 1, None
    while True:
        Z = _xt_times(X, Q, device, tdtype).compute()  # (n, l) = X.T Q
        passes += 1
        if n_iter == "auto":
            evals = np.linalg.eigvalsh(Z.T @ Z)
            energy = float(evals[-k:].clip(min=0).sum())
            if prev is not None and (energy - prev <= tol * max(total - energy, 0.0)
                                     + 1e-7 * total or done >= max_iter):
                break
            prev = energy
        elif done >= int(n_iter):
            break
        Q, _ = da.linalg.tsqr(times(Z))
        Q = Q.persist()
        passes += 1
        done += 1
    # X ~= Q Q^T X = Q Z^T; Z = P S W^T  =>  X ~= (Q W) S P^T
    P, S, Wt = np.linalg.svd(Z, full_matrices=False)
    U = (Q @ Wt.T[:, :k]).compute()
    Vt = P[:, :k].T
    S = S[:k]
    # deterministic signs, as sksvd.linalg.svd_flip (largest |entry| of each Vt row positive)
    signs = np.sign(Vt[np.arange(k), np.abs(Vt).argmax(axis=1)])
    signs[signs == 0] = 1
    out_dtype = numpy_dtype(tdtype)
    U, S, Vt = (U * signs).astype(out_dtype), S.astype(out_dtype), (Vt * signs[:, None]).astype(
        out_dtype)
    if return_info:
        return U, S, Vt, {"n_iter": done, "passes": passes}
    return U, S, Vt
