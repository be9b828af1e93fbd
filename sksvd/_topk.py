"""The one top-k routine: batched factor scores, seen items masked, exact grouped top-k.

Every recommender's ``recommend``, the scorers and the benchmarks' baselines
(scipy-svds PureSVD, implicit's factors, most-popular) rank items here, so
that all of them are ranked and tie-broken the same way: by score, highest
first, and among equal scores by item id, lowest first.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from ._backend import kernel_backend, numpy_dtype, resolve_device, to_device, to_host, to_torch
from ._threads import n_workers, single_threaded, thread_map

__all__ = ["topk_items", "topk_rows", "default_batch_size", "device_batch_size",
           "mask_seen_"]

# Elements of each worker's (batch, n_items) score block: 2**25 floats = 128 MiB in
# float32. With the batches spread over the cores (one BLAS thread each), taller
# blocks make more efficient GEMMs (figures in benchmarks/results).
_BLOCK_ELEMENTS = 2**25
# Fewest rows per batch (a very wide catalogue): skinnier GEMMs lose efficiency.
_MIN_ROWS = 16
# Width of a group in the grouped top-k: the group maxima are taken over this many
# strided columns at once.
_GROUPS = 32
# CPU: rows per batch and items per tile of the fused score-and-select loop
# (:func:`_topk_tiled`): a (512, 4096) block of float32 scores (8 MiB per worker)
# stays in a server CPU's L3 cache, so the selection reads the scores from the
# cache instead of RAM (the tile sizes compared are in benchmarks/results).
_CPU_BATCH = 512
_TILE_ITEMS = 4096


def default_batch_size(n_items, block_elements=_BLOCK_ELEMENTS):
    """Rows per batch so that one (rows, n_items) score block holds ``block_elements``.

    At least 16 rows (so ``16 * n_items`` floats for catalogues wider than
    ``block_elements / 16``). By default 128 MiB of float32 scores per worker
    thread.

    Examples
    --------
    >>> from sksvd._topk import default_batch_size
    >>> default_batch_size(50_000)
    671
    >>> default_batch_size(10**6)
    33
    """
    return max(_MIN_ROWS, int(block_elements) // max(1, int(n_items)))


def mask_seen_(scores, seen, value=-torch.inf):
    """Set ``scores[u, i] = value`` in place wherever ``seen`` (CSR, same rows) stores an entry.

    Parameters
    ----------
    scores : torch.Tensor or ndarray of shape (n_rows, n_items)
    seen : scipy.sparse.csr_matrix of shape (n_rows, n_items)

    Returns
    -------
    scores : the same object, modified

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
    rows = np.repeat(np.arange(seen.shape[0], dtype=np.int64), counts)
    cols = np.asarray(seen.indices[seen.indptr[0]:seen.indptr[-1]], dtype=np.int64)
    if isinstance(scores, np.ndarray):
        scores[rows, cols] = value
        return scores
    rows, cols = torch.from_numpy(rows), torch.from_numpy(cols)
    scores[rows.to(scores.device), cols.to(scores.device)] = value
    return scores


class _Numpy:
    """The array operations of :func:`topk_rows`, on numpy (CPU: one thread, no
    thread-pool wake-ups per small operation, which stall on a busy machine)."""

    inf = np.inf

    @staticmethod
    def group_max(S, groups, width):
        s0, s1 = S.strides
        view = np.lib.stride_tricks.as_strided(S, (S.shape[0], groups, width),
                                               (s0, width * s1, s1), writeable=False)
        return view.max(axis=1)

    @staticmethod
    def argtopk(x, k):  # the k largest, unordered
        return np.argpartition(x, x.shape[1] - k, axis=1)[:, x.shape[1] - k:]

    @staticmethod
    def arange(start, stop, like):
        return np.arange(start, stop, dtype=np.int64)

    @staticmethod
    def row_ids(start, stop, b, like):  # (b, stop - start) int64, each row start..stop-1
        return np.broadcast_to(np.arange(start, stop, dtype=np.int64), (b, stop - start))

    take = staticmethod(lambda x, idx: np.take_along_axis(x, idx, axis=1))
    cat = staticmethod(lambda xs: np.concatenate(xs, axis=1))
    argsort = staticmethod(lambda x: np.argsort(x, axis=1))
    argsort_desc = staticmethod(lambda x: np.argsort(-x, axis=1, kind="stable"))
    cumsum = staticmethod(lambda x: np.cumsum(x, axis=1))
    full = staticmethod(lambda shape, v, like: np.full(shape, v, dtype=like.dtype))
    any = staticmethod(lambda x: bool(x.any()))
    nonzero = staticmethod(lambda x: np.flatnonzero(x))

    @staticmethod
    def smallest(x, k):  # the k smallest values, ascending
        return np.sort(np.partition(x, k - 1, axis=1)[:, :k], axis=1)


class _Torch:
    """The same operations on torch tensors (a GPU's scores stay on the GPU)."""

    inf = torch.inf

    @staticmethod
    def group_max(S, groups, width):
        return S[:, :groups * width].view(S.shape[0], groups, width).amax(dim=1)

    @staticmethod
    def argtopk(x, k):
        return torch.topk(x, k, dim=1, sorted=False).indices

    @staticmethod
    def arange(start, stop, like):
        return torch.arange(start, stop, device=like.device)

    @staticmethod
    def row_ids(start, stop, b, like):
        return torch.arange(start, stop, device=like.device).expand(b, stop - start)

    take = staticmethod(lambda x, idx: torch.gather(x, 1, idx))
    cat = staticmethod(lambda xs: torch.cat(xs, dim=1))
    argsort = staticmethod(lambda x: torch.argsort(x, dim=1))
    argsort_desc = staticmethod(lambda x: torch.sort(x, dim=1, descending=True,
                                                     stable=True).indices)
    cumsum = staticmethod(lambda x: torch.cumsum(x, dim=1))
    full = staticmethod(lambda shape, v, like: torch.full(shape, v, dtype=like.dtype,
                                                          device=like.device))
    any = staticmethod(lambda x: bool(x.any()))
    nonzero = staticmethod(lambda x: x.nonzero()[:, 0])

    @staticmethod
    def smallest(x, k):
        return torch.topk(x, k, dim=1, largest=False, sorted=True).values


def _sort_candidates(xp, vals, ids, k):
    """Order candidates by (value descending, id ascending); keep the first ``k``."""
    order = xp.argsort(ids)
    ids, vals = xp.take(ids, order), xp.take(vals, order)
    order = xp.argsort_desc(vals)[:, :k]
    return xp.take(vals, order), xp.take(ids, order)


def _exact_rows(xp, S, k, kth):
    """Exact top-``k`` of rows whose ``k``-th value ``kth`` is shared beyond the candidates.

    Takes every element above ``kth`` and the lowest-id elements equal to it,
    in O(n_items) per row (no full sort).
    """
    n = S.shape[1]
    gt = S > kth[:, None]
    eq = S == kth[:, None]
    room = k - gt.sum(1)[:, None]
    sel = gt | (eq & (xp.cumsum(eq) <= room))
    key = xp.row_ids(0, n, S.shape[0], S) * 1  # a writable copy
    key[~sel] = n
    ids = xp.smallest(key, k)
    missing = ids >= n
    ids[missing] = 0
    vals = xp.take(S, ids)
    vals[missing] = -xp.inf
    return _sort_candidates(xp, vals, ids, k)


def _grouped_topk(xp, S, k, groups):
    """The grouped selection of :func:`topk_rows`, without its fix of tied rows.

    Returns ``(vals, ids, kk, unsafe)``: each row's best ``kk = min(k, n)``
    candidates, sorted, and a boolean per row (or None when every row is
    exact) marking the rows to redo with :func:`_exact_rows`. Reads nothing
    back to the host, so on a GPU it queues work without waiting.
    """
    b, n = S.shape
    kk = min(int(k), n)
    width = n // max(1, int(groups))
    if b == 0 or n == 0:
        return S[:, :0] * 1, xp.row_ids(0, 0, b, S) * 1, 0, None
    if groups <= 1 or width <= 2 * kk:
        # Narrow rows: the whole row is the candidate set.
        vals, ids = _sort_candidates(xp, S, xp.row_ids(0, n, b, S), kk)
        return vals, ids, kk, None
    n0 = groups * width
    gmax = xp.group_max(S, groups, width)
    gidx = xp.argtopk(gmax, kk)
    offs = xp.arange(0, groups, S) * width
    cand = (gidx[:, :, None] + offs).reshape(b, kk * groups)
    if n0 < n:
        cand = xp.cat([cand, xp.row_ids(n0, n, b, S)])
    cvals = xp.take(S, cand)
    best = xp.argtopk(cvals, kk)
    vals, ids = _sort_candidates(xp, xp.take(cvals, best), xp.take(cand, best), kk)
    kth = vals[:, kk - 1:]
    # More than k groups, or candidates, reaching the k-th score: a tie there, which
    # the lowest ids must win (the group selection does not see ids).
    unsafe = (((gmax >= kth).sum(1) > kk) | ((cvals >= kth).sum(1) > kk)) \
        & (kth[:, 0] > -xp.inf)
    return vals, ids, kk, unsafe


def topk_rows(S, k, groups=_GROUPS):
    """Exact top-``k`` of each row of a score matrix, best first, ties by lowest id.

    The grouped selection reads the scores once at vector speed instead of a
    heap per row: with ``W = n // groups``, the row is viewed as ``groups``
    strided vectors of length ``W``; their elementwise maximum gives ``W``
    group maxima (group ``j`` = items ``j, j + W, j + 2W, ...``); the ``k``
    best groups and the ``n - groups * W`` trailing items are the candidates,
    and the answer is the first ``k`` candidates by (score descending, id
    ascending). It is exact: an item in the top ``k`` lies in a group whose
    maximum is at least the ``k``-th score ``s_k``, and when at most ``k``
    groups reach ``s_k`` all of them are candidates. A row where more than
    ``k`` groups reach ``s_k`` (a tie at ``s_k`` across groups, e.g. an all-zero
    row) is redone exactly in O(n) from ``s_k``.

    Parameters
    ----------
    S : ndarray or torch.Tensor of shape (n_rows, n_items)
        Scores; ``-inf`` marks an excluded item. Not modified. numpy on the
        CPU, torch on any device (the result has the input's kind).
    k : int
        ``1 <= k``; when ``k > n_items`` the extra places are padding.
    groups : int, default=32
        Group width (a tuning knob: the result does not depend on it).

    Returns
    -------
    values : array of shape (n_rows, k), sorted descending per row
    ids : array of shape (n_rows, k), int64
        ``-1`` where the value is ``-inf`` (an excluded item, or padding).

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd._topk import topk_rows
    >>> vals, ids = topk_rows(np.array([[1.0, 3.0, 3.0, -np.inf]]), 4)
    >>> ids
    array([[ 1,  2,  0, -1]])
    """
    xp = _Numpy if isinstance(S, np.ndarray) else _Torch
    b = S.shape[0]
    vals, ids, kk, unsafe = _grouped_topk(xp, S, k, groups)
    if unsafe is not None and xp.any(unsafe):
        rows = xp.nonzero(unsafe)
        vals[rows], ids[rows] = _exact_rows(xp, S[rows], kk, vals[rows, kk - 1])
    ids[~(vals > -xp.inf)] = -1
    if kk < k:
        vals = xp.cat([vals, xp.full((b, k - kk), -xp.inf, vals)])
        ids = xp.cat([ids, xp.full((b, k - kk), -1, ids)])
    return vals, ids


def _merge(best_v, best_i, r, c, v, k):
    """Merge candidates ``(row r, item c, value v)`` into each row's best ``k``, in place.

    ``best_v``/``best_i`` hold each row's best so far, ordered by value
    descending then id ascending; the candidates come in row-major order
    (``r`` ascending, ``c`` ascending within a row) and have higher ids than
    every item kept so far. So one stable sort by value of ``[best | candidates]``
    per row ranks by (value descending, id ascending): an equal value never
    displaces an item kept, as the lowest-id rule wants.
    """
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    counts = np.diff(np.r_[starts, r.size])
    rows = r[starts]
    pos = np.arange(r.size) - np.repeat(starts, counts)
    ridx = np.repeat(np.arange(rows.size), counts)
    width = k + int(counts.max())
    P_v = np.full((rows.size, width), -np.inf, dtype=best_v.dtype)
    P_i = np.full((rows.size, width), -1, dtype=best_i.dtype)
    P_v[:, :k], P_i[:, :k] = best_v[rows], best_i[rows]
    P_v[ridx, k + pos], P_i[ridx, k + pos] = v, c
    order = np.argsort(-P_v, axis=1, kind="stable")[:, :k]
    best_v[rows] = np.take_along_axis(P_v, order, axis=1)
    best_i[rows] = np.take_along_axis(P_i, order, axis=1)


def _above(S, thr, contiguous, groups=4):
    """``(rows, cols)`` of the entries of ``S`` above their row's ``thr``, row-major order.

    With contiguous rows the row is first reduced to the maxima of ``groups``
    interleaved slices (one vectorised pass), and only the slots whose maximum
    passes are looked at (then put back in row-major order): cheaper than
    comparing every score.
    ``flatnonzero`` of the 1-D view is several times faster than a 2-D ``nonzero``.
    """
    b, w = S.shape
    if not contiguous or w % groups or w < 8 * groups:
        return np.divmod(np.flatnonzero(S > thr[:, None]), w)
    wg = w // groups
    hit = np.flatnonzero(S.reshape(b, groups, wg).max(axis=1) > thr[:, None])
    r, t = np.divmod(hit, wg)
    cols = t[:, None] + np.arange(groups) * wg  # the slot's members, ascending
    keep = S[r[:, None], cols] > thr[r][:, None]
    r, c = np.repeat(r, groups)[keep.ravel()], cols[keep]
    order = np.argsort(r * w + c)  # back to row-major order
    return r[order], c[order]


def _topk_tiled(U, Qt, k, seen=None, tile=None, out=None):
    """Exact top-``k`` of each row of ``U @ Qt`` (numpy, one thread), scored tile by tile.

    The items are scored ``tile`` columns at a time into a block that stays in
    the cache, and each block is reduced while it is there: the first block
    by :func:`topk_rows`; every later one is compared with each row's current
    ``k``-th best score, and only the few items above it (for scores in no
    particular order, about ``k / j`` per row in the ``j``-th block) are merged
    in. A block with many such items (scores rising with the item id) goes
    through :func:`topk_rows` instead. Scoring into a RAM-sized block and
    reading it back would double the memory traffic.

    ``seen`` (CSR with ``U``'s rows) marks items excluded: each tile's seen
    entries (grouped by tile once, by a counting sort) are set to ``-inf``
    before it is read. Ties go to the lowest item id; missing places are
    ``-inf`` / ``-1``, as :func:`topk_rows`.
    """
    b, n = U.shape[0], Qt.shape[1]
    tile = int(tile or _TILE_ITEMS)
    kk = min(int(k), n)
    if out is None or out.shape[0] < b or out.shape[1] < min(tile, n):
        out = np.empty((b, min(tile, n)), dtype=np.result_type(U, Qt))
    n_tiles = -(-n // tile)
    if seen is not None and seen.nnz:
        # The seen entries grouped by tile (a stable counting sort on the tile number),
        # so that each tile masks its own before it is read.
        seen = seen.tocoo()
        tile_of = (seen.col // tile).astype(np.int16 if n_tiles < 2**15 else np.int64)
        order = np.argsort(tile_of, kind="stable")  # radix sort for int16
        seen_rows, seen_cols = seen.row[order], seen.col[order]
        bounds = np.r_[0, np.cumsum(np.bincount(tile_of, minlength=n_tiles))]
    else:
        seen_rows = None
    best_v = best_i = thr = None
    for t, j in enumerate(range(0, n, tile)):
        w = min(tile, n - j)
        S = out[:b, :w]
        np.matmul(U, Qt[:, j:j + w], out=S)
        if seen_rows is not None and bounds[t + 1] > bounds[t]:  # seen items: -inf
            lo, hi = bounds[t], bounds[t + 1]
            S[seen_rows[lo:hi], seen_cols[lo:hi] - j] = -np.inf
        if best_v is not None:
            r, c = _above(S, thr, out.shape[1] == w)
            if r.size <= 4 * b * kk + 64:
                if r.size:
                    _merge(best_v, best_i, r, c + j, S[r, c], kk)
                    thr = best_v[:, kk - 1]
                continue
        v, i = topk_rows(S, kk)
        i = np.where(i >= 0, i + j, -1)
        if best_v is None:
            best_v, best_i = v, i
        else:  # merge two sorted lists per row (2 kk candidates)
            vals, ids = _sort_candidates(_Numpy, np.concatenate([best_v, v], axis=1),
                                         np.concatenate([best_i, i], axis=1), kk)
            best_v, best_i = vals, ids
        thr = best_v[:, kk - 1]
    best_i[~(best_v > -np.inf)] = -1
    if kk < k:
        best_v = np.concatenate([best_v, np.full((b, k - kk), -np.inf, best_v.dtype)], axis=1)
        best_i = np.concatenate([best_i, np.full((b, k - kk), -1, best_i.dtype)], axis=1)
    return best_v, best_i


def _item_side(Q, d_off, aug):
    """The item side ``Q^T`` of the score product, or with ``aug`` the augmented
    ``[Q | 1 | d]^T`` (``d`` the item offsets, zero when ``d_off`` is None), which
    adds the row offsets and ``d`` inside the same GEMM."""
    if not aug:
        return Q.T
    d = torch.zeros(Q.shape[0], dtype=Q.dtype, device=Q.device) if d_off is None else d_off
    return torch.cat([Q, torch.ones_like(d)[:, None], d[:, None]], dim=1).T


def topk_items(user_vectors, item_factors, k, *, seen=None, user_offset=None, item_offset=None,
               n_rows=None, batch_size=None, device="cpu", dtype=torch.float32):
    r"""Top-``k`` items of ``user_vectors @ item_factors.T (+ offsets)``, in batches.

    The full (n_users, n_items) score matrix is never built: rows are scored
    ``batch_size`` at a time, seen items are set to ``-inf``, and the best
    ``k`` of each row are kept (:func:`topk_rows`). On the CPU the scores are
    computed by numpy's BLAS (faster than torch's for these skinny products
    on the CPUs measured) on zero-copy views of the factors, one cache-sized
    tile of items at a time, each tile reduced while it is in the cache
    (:func:`_topk_tiled`). On a GPU (:func:`_topk_device`) the factors, the
    offsets, the seen matrix and array user vectors go to the device once
    per call, every batch is scored and selected there, and the results come
    back once at the end: the host waits for the device only at a bounded
    number of checkpoints, not per batch. Offsets are folded into the
    product as two extra factor columns, ``[w_u, c_u, 1] . [q_i, 1, d_i]``,
    so they cost no extra pass.

    Ranking: by score, highest first; among equal scores, lowest item id
    first. Each row's result depends only on that row's scores. Where a row
    has fewer than ``k`` unseen items, the missing places are padded with id
    ``-1`` and score ``-inf``.

    Parameters
    ----------
    user_vectors : ndarray or torch.Tensor of shape (n_users, d), or a callable
        A callable ``f(start, stop) -> (vectors, offset)`` produces the rows'
        vectors (and optional per-row offsets) batch by batch, so that
        fold-in is also done per batch (on a GPU it should return tensors on
        the device: what it returns on the host is copied per batch).
    item_factors : ndarray or torch.Tensor of shape (n_items, d)
    k : int
    seen : scipy.sparse matrix of shape (n_users, n_items), default=None
        Items to exclude per row (the stored entries).
    user_offset : array of shape (n_users,), default=None
        Added to each row's scores (does not change the ranking).
    item_offset : array of shape (n_items,), default=None
        Added to each column's scores (e.g. item biases).
    n_rows : int, default=None
        Number of rows; needed only when ``user_vectors`` is a callable.
    batch_size : int or "auto", default=None
        Rows per batch; None and ``"auto"`` choose for the device. On the CPU
        512 rows, each batch scored 4,096 items at a time and reduced while
        the block is in the cache (:func:`_topk_tiled`); the batches are
        spread over ``torch.get_num_threads()`` worker threads, each with its
        own block and one BLAS thread. On a GPU score blocks of up to 1 GiB,
        and at most an eighth of the free device memory
        (:func:`device_batch_size`).
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
    if isinstance(batch_size, str):
        if batch_size != "auto":
            raise ValueError(f"batch_size={batch_size!r}: expected an int >= 1 or 'auto'")
        batch_size = None
    if callable(user_vectors):
        if n_rows is None:
            raise ValueError("n_rows: required when user_vectors is a callable")
        n_users = int(n_rows)
    else:
        n_users = user_vectors.shape[0]
    if seen is not None and seen.shape[0] != n_users:
        raise ValueError(f"seen: expected {n_users} rows, got {seen.shape[0]}")
    kernel = _topk_cpu if kernel_backend(device) == "host" else _topk_device
    return kernel(user_vectors, item_factors, k, seen=seen, user_offset=user_offset,
                  item_offset=item_offset, n_rows=n_users, batch_size=batch_size,
                  device=device, dtype=dtype)

# GPU score blocks: at most this many bytes, and at most 1 / _FREE_SHARE of the free
# device memory (the block, the selection's temporaries and the caller's own work).
_DEVICE_BLOCK_BYTES = 2**30
_FREE_SHARE = 8
# Device memory held by the user vectors of batches not yet checked for ties
# (:func:`_topk_device`): the host reads the batches' tie flags once per this much.
_PENDING_BYTES = 2**28


def device_batch_size(n_items, device, dtype=torch.float32):
    """Rows per batch of the device top-k: score blocks of up to 1 GiB and 1/8 of free memory.

    On the CPU (the device path run there) :func:`default_batch_size`.

    Examples
    --------
    >>> import torch
    >>> from sksvd._topk import device_batch_size
    >>> device_batch_size(50_000, torch.device("cpu"))
    671
    """
    device = torch.device(device)
    if device.type != "cuda":
        return default_batch_size(n_items)
    free, _ = torch.cuda.mem_get_info(device)
    item = torch.empty((), dtype=dtype).element_size()
    budget = min(_DEVICE_BLOCK_BYTES, free // _FREE_SHARE)
    return default_batch_size(n_items, block_elements=budget // item)


def _topk_device(user_vectors, item_factors, k, *, seen=None, user_offset=None,
                 item_offset=None, n_rows=None, batch_size=None, device="cpu",
                 dtype=torch.float32):
    """:func:`topk_items` on a torch device, the host waiting only at checkpoints.

    Once per call: the item factors and offsets, array user vectors and
    offsets, and the seen matrix (its column indices and row lengths: the
    flat positions ``row * n_items + col`` of the seen entries are built on
    the device) go to the device (:func:`sksvd._backend.to_device`). Per
    batch, all on the device: the scores, ``-inf`` at the batch's seen
    entries (a slice of the flat positions, bounds read from the host's copy
    of ``indptr``), the grouped selection (:func:`_grouped_topk`), and the
    result written into (n_users, k) device arrays. The rows whose ``k``-th
    score ties across groups need the exact pass; their flags are read back
    at checkpoints (once per :data:`_PENDING_BYTES` of user vectors kept for
    them, and at the end): those rows are scored again and redone exactly
    (the seen entries of those rows uploaded once per chunk of rows, chunks
    of the default batch size whatever ``batch_size``). The
    results come back in one transfer each at the end. So the transfers and
    host reads per call do not grow with the number of batches
    (:func:`sksvd._backend.count_transfers` counts them).
    """
    device = resolve_device(device)
    n_users = int(n_rows) if n_rows is not None else user_vectors.shape[0]
    Q = to_device(item_factors, device, dtype)
    n_items = Q.shape[0]
    d_off = None if item_offset is None else to_device(item_offset, device, dtype).reshape(-1)
    if callable(user_vectors):
        fold = user_vectors
    else:
        U_all = to_device(user_vectors, device, dtype)
        c_all = None if user_offset is None else \
            to_device(user_offset, device, dtype).reshape(-1)

        def fold(start, stop):
            return U_all[start:stop], None if c_all is None else c_all[start:stop]

    batch_size = int(batch_size or device_batch_size(n_items, device, dtype))
    ids_out = torch.full((n_users, k), -1, dtype=torch.int64, device=device)
    vals_out = torch.full((n_users, k), -torch.inf, dtype=torch.float32, device=device)
    if n_users == 0 or n_items == 0:
        return to_host(ids_out, vals_out)

    # The seen entries as flat positions row * n_items + col, built on the device.
    flat_seen = indptr = None
    if seen is not None:
        seen = seen.tocsr() if seen.format != "csr" else seen
        indptr = np.asarray(seen.indptr, dtype=np.int64)
        p0, nnz = int(indptr[0]), int(indptr[-1] - indptr[0])
        indptr = indptr - p0
        if nnz:
            counts = to_device(np.diff(indptr), device)
            cols = to_device(seen.indices[p0:p0 + nnz], device).to(torch.int64)
            rows = torch.repeat_interleave(torch.arange(n_users, device=device), counts,
                                           output_size=nnz)
            flat_seen = rows.mul_(n_items).add_(cols)
            del rows, cols, counts

    Qts = {}  # item side of the product, without and with the offset columns

    def item_side(aug):
        if aug not in Qts:
            Qts[aug] = _item_side(Q, d_off, aug)
        return Qts[aug]

    def mask(S, start, stop):
        if flat_seen is not None and indptr[stop] > indptr[start]:
            pos = flat_seen[indptr[start]:indptr[stop]] - start * n_items
            S.view(-1).index_fill_(0, pos, -torch.inf)

    unsafe_out = torch.zeros(n_users, dtype=torch.bool, device=device)
    pending, held = [], 0  # batches whose tie flags the host has not read yet

    def checkpoint():
        if not pending:
            return
        lo, hi = pending[0][0], pending[-1][1]
        bad_dev = torch.nonzero(unsafe_out[lo:hi])[:, 0] + lo
        bad = to_host(bad_dev)  # the one host read of the checkpoint
        for aug in (False, True) if bad.size else ():
            rows, rows_dev, U_rows = [], [], []
            for start, stop, U, a in pending:
                i0, i1 = np.searchsorted(bad, [start, stop])
                if a == aug and i1 > i0:
                    rows.append(bad[i0:i1])
                    rows_dev.append(bad_dev[i0:i1])
                    U_rows.append(U[bad_dev[i0:i1] - start])
            if rows:
                redo_exact(np.concatenate(rows), torch.cat(rows_dev), torch.cat(U_rows),
                           item_side(aug))
        pending.clear()

    def redo_exact(rows, rows_dev, U, Qt):
        # Rows with a tie at the k-th score across groups: scored again and selected
        # exactly from their own scores (the k-th value, then _exact_rows).
        kk = min(k, n_items)
        chunk = max(batch_size, device_batch_size(n_items, device, dtype))
        for j in range(0, rows.size, chunk):
            r = rows[j:j + chunk]
            S = U[j:j + chunk] @ Qt
            if seen is not None:
                sub = seen[r]
                if sub.nnz:
                    pos = np.repeat(np.arange(r.size, dtype=np.int64) * n_items,
                                    np.diff(sub.indptr)) + sub.indices
                    S.view(-1).index_fill_(0, to_device(pos, device), -torch.inf)
            kth = torch.topk(S, kk, dim=1).values[:, kk - 1]
            vals, ids = _exact_rows(_Torch, S, kk, kth)
            r_dev = rows_dev[j:j + chunk]
            vals_out[r_dev, :kk] = vals.to(torch.float32)
            ids_out[r_dev, :kk] = ids.masked_fill(~(vals > -torch.inf), -1)

    for start in range(0, n_users, batch_size):
        stop = min(start + batch_size, n_users)
        U, c_off = fold(start, stop)
        U = to_device(U, device, dtype)
        aug = c_off is not None or d_off is not None
        if aug:
            # Offsets as two extra factor columns: [w, c, 1] . [q, 1, d].
            ones = torch.ones(stop - start, dtype=dtype, device=device)
            c = (torch.zeros_like(ones) if c_off is None
                 else to_device(c_off, device, dtype).reshape(-1))
            U = torch.cat([U, c[:, None], ones[:, None]], dim=1)
        S = U @ item_side(aug)
        mask(S, start, stop)
        vals, ids, kk, unsafe = _grouped_topk(_Torch, S, k, _GROUPS)
        del S
        vals_out[start:stop, :kk] = vals.to(torch.float32)
        ids_out[start:stop, :kk] = ids.masked_fill(~(vals > -torch.inf), -1)
        if unsafe is not None:
            unsafe_out[start:stop] = unsafe
            pending.append((start, stop, U, aug))
            held += U.numel() * U.element_size()
            if held >= _PENDING_BYTES:
                checkpoint()
                held = 0
    checkpoint()
    return to_host(ids_out, vals_out)


def _topk_cpu(user_vectors, item_factors, k, *, seen=None, user_offset=None, item_offset=None,
              n_rows=None, batch_size=None, device="cpu", dtype=torch.float32):
    """:func:`topk_items` on the host: batches over worker threads, each by :func:`_topk_tiled`."""
    n_users = int(n_rows) if n_rows is not None else user_vectors.shape[0]
    Q = to_torch(item_factors, device=device, dtype=dtype)
    n_items = Q.shape[0]
    if callable(user_vectors):
        fold = user_vectors
    else:
        U_all = user_vectors

        def fold(start, stop):
            off = None if user_offset is None else user_offset[start:stop]
            return U_all[start:stop], off

    d_off = None if item_offset is None else to_torch(item_offset, device=device, dtype=dtype)
    if batch_size is None:
        batch_size = _CPU_BATCH
    ids_out = np.full((n_users, k), -1, dtype=np.int64)
    scores_out = np.full((n_users, k), -np.inf, dtype=np.float32)
    Qts = {}  # item side of the product, without and with the offset columns
    lock = threading.Lock()
    local = threading.local()

    def item_side(aug):
        with lock:
            if aug not in Qts:
                Qts[aug] = _item_side(Q, d_off, aug)
            return Qts[aug]

    def run(start):
        stop = min(start + batch_size, n_users)
        U, c_off = fold(start, stop)
        U = to_torch(U, device=device, dtype=dtype)
        aug = c_off is not None or d_off is not None
        if aug:
            # Offsets as two extra factor columns: [w, c, 1] . [q, 1, d].
            ones = torch.ones(stop - start, dtype=dtype, device=device)
            c = (torch.zeros_like(ones) if c_off is None
                 else to_torch(c_off, device=device, dtype=dtype).reshape(-1))
            U = torch.cat([U, c[:, None], ones[:, None]], dim=1)
        Qt = item_side(aug)
        block = getattr(local, "block", None)
        if block is None:  # one score tile per worker thread, reused across its batches
            block = local.block = np.empty((min(batch_size, n_users),
                                            min(_TILE_ITEMS, n_items)),
                                           dtype=numpy_dtype(dtype))
        vals, idx = _topk_tiled(U.numpy(), Qt.numpy(), k,
                                None if seen is None else seen[start:stop], out=block)
        ids_out[start:stop] = idx
        scores_out[start:stop] = vals

    starts = range(0, n_users, batch_size)
    # Batches in parallel, one core each (a GEMM on one BLAS thread, then the
    # single-threaded selection), so that the selection of one batch overlaps the
    # GEMM of another instead of leaving cores idle between threaded GEMMs. BLAS on
    # one thread also with one worker and with overlapping calls: OpenBLAS rounds
    # differently on one and several threads, and the scores must not depend on it.
    workers = n_workers(len(starts))
    with single_threaded():
        thread_map(run, starts, workers)
    return ids_out, scores_out
