"""Device and dtype resolution, and conversion between numpy/scipy and torch.

Every estimator resolves its ``device`` and ``dtype`` here, and every array
crosses the numpy/torch boundary here, so that the rules (``SKSVD_DEVICE``
overriding ``"auto"``, sparse input staying sparse) live in one place.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils import check_random_state

__all__ = [
    "resolve_device",
    "resolve_dtype",
    "numpy_dtype",
    "to_torch",
    "to_numpy",
    "make_generator",
    "seed_from_random_state",
    "sparse_matmul",
    "csr_matmul_cpu",
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
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        name = device
        if name == "auto":
            name = os.environ.get("SKSVD_DEVICE", "").strip() or (
                "cuda" if torch.cuda.is_available() else "cpu"
            )
        try:
            dev = torch.device(name)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(
                f"device={device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from exc
    else:
        raise TypeError(f"device={device!r}: expected a str or torch.device")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present"
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


def to_torch(X, device="cpu", dtype=torch.float32):
    """Move a numpy array or scipy sparse matrix to torch, keeping sparsity.

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
        with warnings.catch_warnings():
            # torch flags sparse CSR as "beta"; the operations used here are stable.
            warnings.simplefilter("ignore", UserWarning)
            t = torch.sparse_csr_tensor(
                torch.from_numpy(np.asarray(X.indptr, dtype=np.int64)),
                torch.from_numpy(np.asarray(X.indices, dtype=np.int64)),
                torch.from_numpy(np.asarray(X.data)).to(dtype),
                size=X.shape,
                check_invariants=False,
            )
        return t.to(device)
    # Contiguous copy only when needed (negative strides, Fortran order).
    arr = np.ascontiguousarray(X)
    return torch.as_tensor(arr, dtype=dtype).to(device)


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
    """Draw a 63-bit integer seed from a ``random_state`` argument.

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
    values as weights): measured 3x faster than scipy's CSR kernel and 2-3x
    faster than ``torch.sparse.mm`` for a batch of 512 users x 50,000 items
    (60-80k nonzeros) times 100 factors on one core. Rows with no entry give
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
