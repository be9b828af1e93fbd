"""Device and dtype resolution, and conversion between numpy/scipy and torch.

Every estimator resolves its ``device`` and ``dtype`` here, and every array
crosses the numpy/torch boundary here, so that the rules (``SKSVD_DEVICE``
overriding ``"auto"``, sparse input staying sparse) live in one place.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
import weakref

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils import check_random_state

__all__ = [
    "resolve_device",
    "resolve_dtype",
    "numpy_dtype",
    "kernel_backend",
    "svd_operands",
    "to_torch",
    "to_numpy",
    "make_generator",
    "seed_from_random_state",
    "sparse_matmul",
    "csr_matmul_cpu",
    "to_device",
    "to_host",
    "host_read",
    "count_transfers",
    "device_array",
    "clear_device_cache",
]

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def resolve_device(device="auto"):
    """Resolve a ``device`` argument to a :class:`torch.device`.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, default="auto"
        ``"auto"`` is the value of the environment variable ``SKSVD_DEVICE``
        when it is set, else ``"cuda"`` when a CUDA GPU is available, else
        ``"cpu"``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the device is not understood, or CUDA is asked for and absent.

    Examples
    --------
    >>> from sksvd._backend import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    env = None
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        name = device
        if name == "auto":
            env = os.environ.get("SKSVD_DEVICE", "").strip() or None
            name = env or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(name)
        except (RuntimeError, ValueError) as exc:
            where = f" (from SKSVD_DEVICE={env!r})" if env else ""
            raise ValueError(
                f"device={device!r}{where}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from exc
    else:
        raise TypeError(f"device={device!r}: expected a str or torch.device")
    where = f" (from SKSVD_DEVICE={env!r})" if env else ""
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(
            f"device={device!r}{where}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r}{where}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}{where}: only {torch.cuda.device_count()} CUDA device(s) "
                "present"
            )
    return dev


def resolve_dtype(dtype="float32"):
    """Resolve a ``dtype`` argument to a floating :class:`torch.dtype`.

    Parameters
    ----------
    dtype : str, numpy dtype or torch.dtype, default="float32"
        ``"float32"`` or ``"float64"`` (``"float16"``/``"bfloat16"`` are
        accepted for GPU experiments; linear algebra falls back to float32).

    Returns
    -------
    torch.dtype

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd._backend import resolve_dtype
    >>> resolve_dtype(np.float64)
    torch.float64
    """
    if isinstance(dtype, torch.dtype):
        if dtype in _DTYPES.values():
            return dtype
    elif isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
        if name in _DTYPES:
            return _DTYPES[name]
    raise ValueError(f"dtype={dtype!r}: expected 'float32' or 'float64'")


def numpy_dtype(dtype):
    """The numpy dtype that stores a torch floating dtype (bf16/fp16 -> float32).

    Examples
    --------
    >>> import torch
    >>> from sksvd._backend import numpy_dtype
    >>> numpy_dtype(torch.float64)
    dtype('float64')
    """
    return np.dtype(np.float64) if dtype == torch.float64 else np.dtype(np.float32)


# The CPU runs the host kernels (numpy/scipy/BLAS on host arrays: faster there than
# torch's for the products of the SVD and top-k kernels). False: the CPU runs the torch
# kernels a GPU runs (the tests check the device code on the CPU with it).
_HOST_KERNELS_ON_CPU = True


def kernel_backend(device):
    """The kernels that run on ``device``: ``"host"`` (numpy/scipy) or ``"torch"``.

    The one choice of backend: :mod:`sksvd.linalg`'s products, the top-k of
    :mod:`sksvd._topk` and the estimators' operands follow it.

    Examples
    --------
    >>> from sksvd._backend import kernel_backend
    >>> kernel_backend("cpu")
    'host'
    """
    device = torch.device(device)
    return "host" if device.type == "cpu" and _HOST_KERNELS_ON_CPU else "torch"


def svd_operands(X, device, dtype, transpose=False):
    """``(A, At)``: a numpy/scipy ``X`` as the SVD kernels of :mod:`sksvd.linalg` take it.

    Host kernels (:func:`kernel_backend`): ``X`` itself in ``dtype``'s numpy
    type (no copy when it has it; no int64 index copy, no transposed CSR) and
    ``At=None``. Torch kernels: ``X`` on ``device``, moved once (a dense array
    bound for CUDA is cast into pinned host memory, one host copy with the
    cast, and sent without blocking), and with ``transpose`` a sparse ``X``'s
    transpose as CSR (so that both products of the SVD are row-parallel).

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix of shape (m, n)
    device : torch.device
    dtype : torch.dtype
    transpose : bool, default=False

    Returns
    -------
    A : ndarray, scipy.sparse matrix or torch.Tensor of shape (m, n)
        The operand, on the host or on ``device``.
    At : torch.Tensor of shape (n, m) or None
        The transposed sparse CSR operand (torch kernels, sparse ``X``, ``transpose``).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sksvd._backend import svd_operands
    >>> A, At = svd_operands(np.eye(2), torch.device("cpu"), torch.float32)
    >>> A.dtype, At
    (dtype('float32'), None)
    """
    device = torch.device(device)
    if kernel_backend(device) == "host":
        return X.astype(numpy_dtype(dtype), copy=False), None
    if sp.issparse(X):
        At = to_torch(X.T.tocsr(), device=device, dtype=dtype) if transpose else None
        return to_torch(X, device=device, dtype=dtype), At
    if device.type != "cuda":
        return to_torch(X, device=device, dtype=dtype), None
    pinned = torch.empty(X.shape, dtype=dtype, pin_memory=True)
    pinned.numpy()[...] = X  # cast and copy in one pass
    return pinned.to(device, non_blocking=True), None


def to_torch(X, device="cpu", dtype=torch.float32):
    """Move a numpy array or scipy sparse matrix to torch, keeping sparsity.

    Host arrays go to the device through :func:`to_device` (counted by
    :func:`count_transfers`).

    Parameters
    ----------
    X : ndarray, scipy.sparse matrix/array or torch.Tensor
        Dense input becomes a strided tensor; CSR, CSC and COO input become a
        torch sparse CSR tensor (never densified).
    device : torch.device or str, default="cpu"
    dtype : torch.dtype, default=torch.float32

    Returns
    -------
    torch.Tensor
        ``X`` on ``device`` in ``dtype``, strided or sparse CSR.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from sksvd._backend import to_torch
    >>> t = to_torch(sp.eye(3, format="csr"))
    >>> t.layout
    torch.sparse_csr
    """
    device = torch.device(device)
    if isinstance(X, torch.Tensor):
        return X.to(device=device, dtype=dtype)
    if sp.issparse(X):
        X = X.tocsr()
        if not X.has_sorted_indices:
            X = X.sorted_indices()
        # The three arrays go up as they are stored (int32 indices stay int32 on the
        # way: half the bytes) and are widened on the device.
        crow = to_device(X.indptr, device).to(torch.int64)
        col = to_device(X.indices, device).to(torch.int64)
        val = to_device(X.data, device, dtype)
        with warnings.catch_warnings():
            # torch flags sparse CSR as "beta"; the operations used here are stable.
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(crow, col, val, size=X.shape,
                                           check_invariants=False)
    return to_device(X, device, dtype)


def to_numpy(t, dtype=None):
    """Bring a torch tensor back to a numpy array on the host.

    Sparse tensors come back as :class:`scipy.sparse.csr_matrix`.

    Examples
    --------
    >>> import torch
    >>> from sksvd._backend import to_numpy
    >>> to_numpy(torch.ones(2), dtype="float64")
    array([1., 1.])
    """
    if t.layout == torch.sparse_csr:
        t = t.cpu()
        out = sp.csr_matrix(
            (t.values().numpy(), t.col_indices().numpy(), t.crow_indices().numpy()),
            shape=tuple(t.shape),
        )
        return out.astype(dtype) if dtype is not None else out
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    arr = t.detach().cpu().numpy()
    return arr.astype(dtype, copy=False) if dtype is not None else arr


def seed_from_random_state(random_state):
    """An integer seed from a ``random_state`` argument: the int itself, or a draw in [0, 2**31 - 1).

    ``None`` draws from fresh entropy, an int is used as is, a
    :class:`numpy.random.RandomState` is advanced once (sklearn's convention).

    Examples
    --------
    >>> from sksvd._backend import seed_from_random_state
    >>> seed_from_random_state(3)
    3
    """
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state={random_state}: expected an int >= 0")
        return int(random_state)
    rng = check_random_state(random_state)
    return int(rng.randint(0, np.iinfo(np.int32).max))


def make_generator(random_state, device="cpu"):
    """A seeded :class:`torch.Generator` on ``device``.

    Examples
    --------
    >>> import torch
    >>> from sksvd._backend import make_generator
    >>> g = make_generator(0)
    >>> torch.randn(2, generator=g).shape
    torch.Size([2])
    """
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(seed_from_random_state(random_state))
    return gen


def sparse_matmul(A, B):
    """``A @ B`` for a (sparse or dense) tensor ``A`` and a dense ``B``.

    Examples
    --------
    >>> import torch
    >>> import scipy.sparse as sp
    >>> from sksvd._backend import sparse_matmul, to_torch
    >>> sparse_matmul(to_torch(sp.eye(2, format="csr")), torch.ones(2, 1)).shape
    torch.Size([2, 1])
    """
    if A.layout == torch.strided:
        return A @ B
    return torch.sparse.mm(A, B)


def csr_matmul_cpu(X, V):
    """``X @ V`` for a scipy CSR ``X`` and a dense numpy ``V``, on the CPU, as a torch tensor.

    A weighted sum of rows of ``V`` per row of ``X``, by
    :func:`torch.nn.functional.embedding_bag` (``mode="sum"`` with the stored
    values as weights): a gather of whole rows of ``V`` per nonzero, which
    vectorises over the factors where scipy's CSR kernel and
    ``torch.sparse.mm`` loop per element (the comparison is in
    ``benchmarks/bench_topn.py``). Rows with no entry give
    zeros. The result has ``V``'s dtype; ``X``'s values are cast to it.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sksvd._backend import csr_matmul_cpu
    >>> csr_matmul_cpu(sp.csr_matrix([[0.0, 2.0], [0.0, 0.0]]), np.eye(2, dtype=np.float32))
    tensor([[0., 2.],
            [0., 0.]])
    """
    import torch.nn.functional as F

    X = X.tocsr() if X.format != "csr" else X
    V = torch.from_numpy(np.require(V, requirements=("C", "W")))
    p0, p1 = int(X.indptr[0]), int(X.indptr[-1])
    idx_dtype = np.int32 if X.indices.dtype == np.int32 and X.indptr.dtype == np.int32 \
        else np.int64
    # Views of X's own arrays where their dtypes fit (copies only otherwise).
    indices = torch.from_numpy(np.require(X.indices[p0:p1], idx_dtype, ("C", "W")))
    offsets = torch.from_numpy(np.require(X.indptr - p0, idx_dtype, ("C", "W")))
    weights = torch.from_numpy(np.require(X.data[p0:p1], V.numpy().dtype, ("C", "W")))
    if V.shape[0] == 0 or V.shape[1] == 0 or indices.numel() == 0:
        return torch.zeros(X.shape[0], V.shape[1], dtype=V.dtype)
    return F.embedding_bag(indices, V, offsets, mode="sum", per_sample_weights=weights,
                           include_last_offset=True)


# ----------------------------------------------------------------- transfers
# Host-to-device copies up to this size go through pinned (page-locked) memory and
# return at once (non_blocking); larger ones are copied straight from the pageable
# array: for a one-off large array, staging it into a pinned buffer first costs a
# host copy of the same size (plus page-locking a fresh buffer), so it saves nothing.
_PIN_MAX_BYTES = 32 * 2**20
_COUNTERS = []
_COUNT_LOCK = threading.Lock()


def _count(kind, n=1):
    if _COUNTERS:
        with _COUNT_LOCK:
            for c in _COUNTERS:
                c[kind] += n


@contextlib.contextmanager
def count_transfers():
    """Count the transfers made through :func:`to_device`, :func:`to_host` and :func:`host_read`.

    Yields a dict, updated while the block runs, with ``"h2d"`` (arrays
    taken from the host to a device: on the CPU, numpy arrays wrapped as
    tensors), ``"d2h"`` (tensors brought back to the host) and
    ``"host_reads"`` (points where the host waits for the device's values).
    Counters nest; every active one counts (from every thread).

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd._backend import count_transfers, to_device, to_host
    >>> with count_transfers() as c:
    ...     _ = to_host(to_device(np.ones(3), "cpu") * 2)
    >>> c
    {'h2d': 1, 'd2h': 1, 'host_reads': 1}
    """
    c = {"h2d": 0, "d2h": 0, "host_reads": 0}
    with _COUNT_LOCK:
        _COUNTERS.append(c)
    try:
        yield c
    finally:
        with _COUNT_LOCK:
            for i, other in enumerate(_COUNTERS):
                if other is c:
                    del _COUNTERS[i]
                    break


def to_device(x, device, dtype=None):
    """A dense array on ``device`` (one host-to-device copy at most), without blocking the host.

    numpy input (and CPU tensors bound for a GPU) is copied once; a tensor
    already on ``device`` with the dtype asked for is returned as is. For a
    GPU, arrays up to 32 MiB are staged in pinned memory and copied
    asynchronously (the host goes on while the copy runs; the pinned buffer
    is the copy's own, so the caller may change ``x`` at once); larger ones
    are copied from ``x`` directly. The dtype is changed on the host (a
    narrower type then crosses as fewer bytes). On the CPU a numpy array is
    wrapped without a copy where its dtype and layout allow.

    Parameters
    ----------
    x : ndarray or torch.Tensor
    device : str or torch.device
    dtype : torch.dtype, default=None
        None keeps ``x``'s dtype.

    Returns
    -------
    torch.Tensor

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sksvd._backend import to_device
    >>> to_device(np.arange(3), "cpu", torch.float32)
    tensor([0., 1., 2.])
    """
    device = torch.device(device)
    if isinstance(x, torch.Tensor):
        if x.device == device or (device.type == x.device.type == "cuda"
                                  and device.index is None
                                  and x.device.index == torch.cuda.current_device()):
            return x if dtype is None or x.dtype == dtype else x.to(dtype)
        if x.device.type != "cpu":  # device to device (or back to the host)
            if device.type == "cpu":
                _count("d2h")
            return x.to(device=device, dtype=dtype)
        t = x
    else:
        # Contiguous copy only when needed (negative strides, Fortran order).
        t = torch.as_tensor(np.ascontiguousarray(x))
    _count("h2d")
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    if device.type == "cpu":
        return t
    if t is x and t.is_pinned():  # the caller's own pinned memory: no copy of it to wait on
        return t.to(device)
    if t.numel() * t.element_size() <= _PIN_MAX_BYTES:
        t = t.pin_memory()  # the copy's own buffer: the host need not wait for the copy
    return t.to(device, non_blocking=True)


def to_host(*tensors):
    """Tensors as numpy arrays on the host, brought back with one wait for the device.

    GPU tensors are copied into pinned buffers asynchronously, then the host
    waits once for all of them; CPU tensors come back as views of their
    memory (no copy), as :meth:`torch.Tensor.numpy`. Counted by :func:`count_transfers` (one
    ``"d2h"`` per tensor, one ``"host_reads"`` per call).

    Returns
    -------
    ndarray, or a tuple of ndarrays when given several tensors

    Examples
    --------
    >>> import torch
    >>> from sksvd._backend import to_host
    >>> to_host(torch.arange(2), torch.ones(1))
    (array([0, 1]), array([1.], dtype=float32))
    """
    out, cuda = [], set()
    for t in tensors:
        t = t.detach()
        if t.device.type == "cuda":
            buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            buf.copy_(t, non_blocking=True)
            cuda.add(t.device)
            t = buf
        elif t.device.type != "cpu":
            t = t.cpu()
        out.append(t)
    for dev in cuda:
        torch.cuda.current_stream(dev).synchronize()
    _count("d2h", len(tensors))
    _count("host_reads")
    arrays = tuple(t.numpy() for t in out)
    return arrays[0] if len(arrays) == 1 else arrays


def host_read(t):
    """A device tensor's values as Python numbers (a host read: the host waits for the device).

    Counted by :func:`count_transfers`.

    Examples
    --------
    >>> import torch
    >>> from sksvd._backend import host_read
    >>> host_read(torch.tensor([1, 2]).sum())
    3
    """
    return to_host(t).tolist()


# ----------------------------------------------------- device copies of fitted arrays
# estimator -> {(attribute, device, dtype): (the array, its device copy)}. Held beside
# the estimator, not on it: clone, pickle and deepcopy never carry device tensors, and
# the entries go with the estimator.
_DEVICE_CACHE = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _device_key(device):
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


def device_array(est, name, device, dtype=torch.float32):
    """``getattr(est, name)`` on ``device``, copied there once and then reused.

    The copy is kept beside the estimator (in a table keyed weakly on it,
    not in its ``__dict__``: ``clone``, ``pickle`` and ``copy.deepcopy`` never
    carry it) and is reused while the attribute is the same object. ``fit``
    assigns new arrays to fitted attributes, so a refit is picked up; a new
    ``device`` or ``dtype`` (``set_params``) is another entry. An array
    changed in place is not detected: call :func:`clear_device_cache` after
    writing into a fitted attribute.

    Parameters
    ----------
    est : object
        Any object that supports weak references (every estimator); others
        get a fresh copy each call.
    name : str
        Attribute name, e.g. ``"item_factors_"``.
    device : str or torch.device
    dtype : torch.dtype, default=torch.float32

    Returns
    -------
    torch.Tensor
        Shared between calls: do not modify it in place.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sksvd._backend import device_array
    >>> class Est:
    ...     item_factors_ = np.eye(2)
    >>> est = Est()
    >>> device_array(est, "item_factors_", "cpu") is device_array(est, "item_factors_", "cpu")
    True
    """
    arr = getattr(est, name)
    key = (name, _device_key(device), dtype)
    try:
        with _CACHE_LOCK:
            hit = _DEVICE_CACHE.get(est, {}).get(key)
    except TypeError:  # no weak references to est: no cache
        return to_device(arr, device, dtype)
    if hit is not None and hit[0] is arr:
        return hit[1]
    t = to_device(arr, device, dtype)
    with _CACHE_LOCK:
        _DEVICE_CACHE.setdefault(est, {})[key] = (arr, t)
    return t


def clear_device_cache(est=None):
    """Drop the device copies made by :func:`device_array` for ``est`` (all when None).

    Examples
    --------
    >>> from sksvd._backend import clear_device_cache
    >>> clear_device_cache()
    """
    with _CACHE_LOCK:
        if est is None:
            _DEVICE_CACHE.clear()
        else:
            try:
                _DEVICE_CACHE.pop(est, None)
            except TypeError:
                pass
