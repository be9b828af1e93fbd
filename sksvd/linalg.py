"""Truncated SVD kernels: exact and randomized, dense and sparse.

Pure functions with shape contracts, in the manner of :mod:`torch.linalg`:
estimators call them, and the numpy wrapper :func:`truncated_svd` is the
bridge for numpy/scipy input. Results are torch tensors. The exact solvers
run in torch on the input's device. The randomized solver chooses its
kernels once per call (:func:`sksvd._backend.kernel_backend`): on the CPU
its products run on zero-copy views of the input (which also takes numpy
arrays and scipy sparse matrices as they are) through numpy/scipy, or torch's
CPU GEMM for a dense product that reads the matrix row-major, and its small
dense steps through torch on one thread (scipy's subset eigensolver for a
large Rayleigh-Ritz matrix); on other devices everything runs
through torch; the iteration
around them is the same code. Signs are made deterministic as scikit-learn's
``svd_flip`` does for ``TruncatedSVD`` (the largest-magnitude entry of each
right singular vector is positive).

References
----------
N. Halko, P.-G. Martinsson and J. A. Tropp, "Finding structure with
randomness: probabilistic algorithms for constructing approximate matrix
decompositions", SIAM Review 53(2), 2011 (Algorithms 4.3/4.4 and 5.1).
C. Musco and C. Musco, "Randomized block Krylov methods for stronger and
faster approximate singular value decomposition", NeurIPS 2015.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import scipy.sparse as sp
import torch

from ._backend import (
    kernel_backend,
    make_generator,
    resolve_device,
    resolve_dtype,
    sparse_matmul,
    to_numpy,
    to_torch,
)
from ._threads import blas_threads, outer_threads, single_threaded, thread_map, torch_threads

__all__ = [
    "svd_flip",
    "squared_frobenius_norm",
    "singular_values",
    "exact_svd",
    "randomized_svd",
    "gram_svd",
    "truncated_svd",
    "choose_algorithm",
    "default_block_size",
]


# Elements per block when accumulating norms in float64 on the CPU (1 MiB of
# float64, cache-sized: a float64 copy of a whole small matrix would double the
# peak memory of a fit). Devices use larger blocks (fewer kernel launches).
_NORM_BLOCK = 2**17
_NORM_BLOCK_DEVICE = 2**22


def _is_sparse(A):
    return A.layout != torch.strided


def _transpose(A):
    """``A.T``: a view for dense tensors, a new CSR tensor for sparse CSR."""
    if not _is_sparse(A):
        return A.T
    # CSR -> (transpose) CSC of A.T with the same arrays -> CSR of A.T.
    return A.t().to_sparse_csr()


def svd_flip(U, Vt):
    """Make SVD signs deterministic: the largest |entry| of each row of ``Vt`` is positive.

    Parameters
    ----------
    U : torch.Tensor of shape (m, k)
    Vt : torch.Tensor of shape (k, n)

    Returns
    -------
    U, Vt : torch.Tensor, same shapes, columns/rows multiplied by +-1.

    Examples
    --------
    >>> import torch
    >>> from sksvd.linalg import svd_flip
    >>> U, Vt = svd_flip(torch.eye(2), -torch.eye(2))
    >>> Vt.diagonal()
    tensor([1., 1.])
    """
    signs = _row_signs(Vt)
    return U * signs, Vt * signs[:, None]


def _row_signs(Vt, chunk=16):
    """+-1 per row of ``Vt``: the sign of its largest-magnitude entry (+1 for a zero row).

    On the CPU, from each row's largest and smallest entries (two reductions,
    no ``|Vt|``-size temporary): the sign is that of whichever has the larger
    magnitude; rows where the two magnitudes tie are settled as
    :func:`svd_flip` does, by the first entry of largest magnitude. Other
    devices take that rule on every row (no host read), ``chunk`` rows at a time.
    """
    if Vt.shape[0] == 0 or Vt.shape[1] == 0:
        return torch.ones(Vt.shape[0], dtype=Vt.dtype, device=Vt.device)
    if Vt.device.type != "cpu":
        signs = _first_max_signs(Vt, torch.arange(Vt.shape[0], device=Vt.device), chunk)
    else:
        hi, lo = Vt.amax(dim=1), Vt.amin(dim=1)
        signs = torch.where(hi >= -lo, torch.sign(hi), torch.sign(lo))
        tie = hi == -lo
        if bool(tie.any()):
            rows = tie.nonzero().flatten()
            signs[rows] = _first_max_signs(Vt, rows, chunk)
    signs[signs == 0] = 1
    return signs


def _first_max_signs(Vt, rows, chunk):
    """The sign of the first largest-magnitude entry of each of ``Vt``'s ``rows``."""
    out = []
    for r in range(0, rows.numel(), chunk):
        picked = Vt[rows[r:r + chunk]]
        idx = picked.abs().argmax(dim=1)
        out.append(torch.sign(picked[torch.arange(picked.shape[0], device=Vt.device), idx]))
    return torch.cat(out)


def squared_frobenius_norm(A):
    """Exact ``||A||_F^2`` of a dense or sparse tensor, ndarray or scipy matrix, in float64.

    Examples
    --------
    >>> import torch
    >>> from sksvd.linalg import squared_frobenius_norm
    >>> round(squared_frobenius_norm(torch.ones(2, 3)), 12)
    6.0
    """
    if not isinstance(A, torch.Tensor):  # numpy / scipy: the same blocks, in numpy
        vals = (A.data if sp.issparse(A) else np.asarray(A)).reshape(-1)
        total = 0.0
        for start in range(0, vals.size, _NORM_BLOCK):
            chunk = vals[start:start + _NORM_BLOCK].astype(np.float64)
            total += float(chunk @ chunk)
        return total
    vals = (A.values() if _is_sparse(A) else A).reshape(-1)
    total = torch.zeros((), dtype=torch.float64, device=vals.device)
    # float64 accumulation in blocks: no float64 copy of the whole matrix.
    step = _NORM_BLOCK if vals.device.type == "cpu" else _NORM_BLOCK_DEVICE
    for s in range(0, vals.numel(), step):
        total += torch.linalg.vector_norm(vals[s:s + step], dtype=torch.float64) ** 2
    return float(total)


def singular_values(A):
    """All singular values of ``A`` (dense; sparse input is densified), descending.

    Examples
    --------
    >>> import torch
    >>> from sksvd.linalg import singular_values
    >>> singular_values(torch.diag(torch.tensor([1.0, 3.0])))
    tensor([3., 1.])
    """
    if _is_sparse(A):
        A = A.to_dense()
    return torch.linalg.svdvals(A)


def exact_svd(A, n_components):
    """Rank-``n_components`` truncation of the exact SVD (``torch.linalg.svd``).

    Parameters
    ----------
    A : torch.Tensor of shape (m, n), dense or sparse CSR (densified)
    n_components : int in [1, min(m, n)]

    Returns
    -------
    U : (m, k), S : (k,), Vt : (k, n) torch.Tensor, signs flipped by :func:`svd_flip`.

    Examples
    --------
    >>> import torch
    >>> from sksvd.linalg import exact_svd
    >>> U, S, Vt = exact_svd(torch.diag(torch.tensor([1.0, 3.0])), 1)
    >>> S
    tensor([3.])
    """
    if _is_sparse(A):
        A = A.to_dense()
    U, S, Vt = torch.linalg.svd(A, full_matrices=False)
    k = int(n_components)
    U, Vt = svd_flip(U[:, :k], Vt[:k])
    return U, S[:k], Vt


class _Operator:
    """``F``, the short-side-first view of ``A`` (``A`` or ``A.T``), for products.

    ``F`` has shape (s, L) with ``s = min(m, n)``. The kernels are chosen
    once, from ``A``'s kind and device (:func:`sksvd._backend.kernel_backend`):
    ``backend="host"`` runs the products on zero-copy views: for dense ``A``
    GEMMs, torch's (MKL) for the product whose matrix operand (``A`` or
    ``A.T``) is row-major and numpy's BLAS for the one that reads it
    transposed (each the faster of the two there, on the narrow blocks of
    the solver); for sparse ``A`` scipy's CSR kernels on row blocks in worker
    threads (``A.T @ Y`` of a CSR matrix is scipy's CSC kernel on the same
    arrays, no transposed copy), or on one thread torch's (MKL) CSR product
    for ``A @ X`` on the same arrays, faster than scipy's there (all but the
    wide final product: see :meth:`_apply`);
    ``backend="torch"`` through torch on ``A``'s
    device (``At``, the transposed CSR, is built once when not given).
    ``threads`` is the count the threaded steps (the passes over ``A``) use.
    """

    def __init__(self, A, At=None, threads=None):
        m, n = A.shape
        self.transposed = m > n
        self.shape = (n, m) if self.transposed else (m, n)
        self.threads = int(threads) if threads is not None else outer_threads()
        self.chunks = None
        if isinstance(A, np.ndarray) or sp.issparse(A):
            if A.dtype.kind != "f":
                raise TypeError(f"A has dtype {A.dtype}: expected float32 or float64")
            self.backend = "host"
            self.device = torch.device("cpu")
            self.dtype = resolve_dtype(A.dtype)
            if sp.issparse(A) and A.format != "csr":
                A = sp.csr_matrix(A)
            self.A = A
        elif kernel_backend(A.device) == "host" \
                and (not _is_sparse(A) or A.layout == torch.sparse_csr):
            self.backend = "host"
            self.device, self.dtype = A.device, A.dtype
            if _is_sparse(A):
                self.A = sp.csr_matrix((A.values().numpy(), A.col_indices().numpy(),
                                        A.crow_indices().numpy()), shape=A.shape)
            else:
                self.A = A.detach().numpy()
        else:
            self.backend = "torch"
            self.device, self.dtype = A.device, A.dtype
            self.A = A
            self.At = At if At is not None else _transpose(A)
        if self.backend == "host" and sp.issparse(self.A):
            self._split_rows(self.threads)
        # Host A: a torch view (no copy) of the operand of the product that _apply runs
        # through torch: for dense A, whichever of A and A.T is row-major; for CSR A
        # unsplit (one thread), A itself, for A @ X.
        self.rowmajor = None
        if self.backend == "host" and not sp.issparse(self.A) \
                and self.A.dtype.byteorder in "=|" and self.A.ndim == 2:
            for flipped, M in ((False, self.A), (True, self.A.T)):
                if M.flags.c_contiguous:
                    with warnings.catch_warnings():  # read-only input: only read here
                        warnings.simplefilter("ignore", UserWarning)
                        self.rowmajor = (flipped, torch.from_numpy(M))
                    break
        elif self.backend == "host" and self.chunks is None and self.A.has_sorted_indices \
                and self.A.indices.dtype == self.A.indptr.dtype \
                and self.A.data.dtype.byteorder in "=|":
            A = self.A
            with warnings.catch_warnings():  # read-only arrays; CSR flagged "beta"
                warnings.simplefilter("ignore", UserWarning)
                self.rowmajor = (False, torch.sparse_csr_tensor(
                    torch.from_numpy(A.indptr), torch.from_numpy(A.indices),
                    torch.from_numpy(A.data), size=A.shape, check_invariants=False))

    def _split_rows(self, n_threads, min_nnz=2**18):
        """Row blocks of the CSR matrix with equal nonzeros, as views (no copy).

        scipy's sparse kernels run on one thread but release the GIL, so the
        blocks' products run on ``n_threads`` worker threads.
        """
        A = self.A
        n_threads = min(int(n_threads), max(1, A.nnz // min_nnz))
        if n_threads < 2:
            return
        bounds = np.searchsorted(A.indptr, np.linspace(0, A.nnz, n_threads + 1)[1:-1])
        rows = [0, *sorted(set(int(r) for r in bounds)), A.shape[0]]
        self.chunks = []
        for r0, r1 in zip(rows[:-1], rows[1:], strict=True):
            p0, p1 = A.indptr[r0], A.indptr[r1]
            block = sp.csr_matrix((A.data[p0:p1], A.indices[p0:p1], A.indptr[r0:r1 + 1] - p0),
                                  shape=(r1 - r0, A.shape[1]), copy=False)
            self.chunks.append((r0, r1, block))

    def _apply(self, X, transpose, lean=False):
        """``A @ X`` (``transpose=False``) or ``A.T @ X``, as a torch tensor.

        ``lean``: no temporary beyond the result on the host path (the torch
        CSR product allocates one of the result's size, so a wide ``X``
        takes scipy's kernel instead).
        """
        if self.backend == "torch":
            return sparse_matmul(self.At if transpose else self.A, X)
        if self.rowmajor is not None and self.rowmajor[0] == transpose \
                and self.rowmajor[1].dtype == X.dtype \
                and not (lean and _is_sparse(self.rowmajor[1])):
            M = self.rowmajor[1]
            if _is_sparse(M):  # unsplit CSR: one thread, as scipy's kernel (MKL's rounding
                # depends on its thread count); X as it comes, column-major views included
                with torch_threads(1):
                    return torch.mm(M, X)
            with torch_threads(self.threads):  # the one threaded step (see randomized_svd)
                return torch.mm(M, X.contiguous())
        x = X.numpy()
        if self.chunks is None and not sp.issparse(self.A):
            with blas_threads(self.threads):  # the one threaded step (see randomized_svd)
                out = (self.A.T if transpose else self.A) @ x
        elif self.chunks is None:
            out = (self.A.T if transpose else self.A) @ x
        elif transpose:  # sum over row blocks of A_c.T @ x_c
            out = sum(thread_map(lambda c: c[2].T @ x[c[0]:c[1]], self.chunks,
                                 len(self.chunks)))
        else:  # row blocks of A @ x, each written into its rows of out
            out = np.empty((self.A.shape[0], x.shape[1]), dtype=np.result_type(self.A, x))

            def rows(c):
                out[c[0]:c[1]] = c[2] @ x

            thread_map(rows, self.chunks, len(self.chunks))
        return torch.from_numpy(np.ascontiguousarray(out))

    def gram(self):
        """``F F^T`` (s, s), dense input only (BLAS's ``syrk`` through numpy on the CPU)."""
        if self.backend == "torch":
            return self.A.T @ self.A if self.transposed else self.A @ self.A.T
        F = self.A.T if self.transposed else self.A
        with blas_threads(self.threads):
            return torch.from_numpy(F @ F.T)

    def matmat(self, X):
        """``F @ X`` for ``X`` of shape (L, b)."""
        return self._apply(X, self.transposed)

    def rmatmat(self, Y, lean=False):
        """``F.T @ Y`` for ``Y`` of shape (s, b) (``lean``: see :meth:`_apply`)."""
        return self._apply(Y, not self.transposed, lean)


# Rows from which a CPU block is orthonormalised by Cholesky QR (see _orthonormalize).
_CHOLESKY_QR_ROWS = 2048


def _orthonormalize(Y, basis=None):
    """Orthonormal basis of ``Y``'s columns with those of ``basis`` projected out.

    Block classical Gram-Schmidt against ``basis`` (one matrix with
    orthonormal columns) and a QR, done twice ("twice is enough"), so that
    even a numerically exhausted block (a Krylov space that has captured the
    whole range) comes back orthogonal to ``basis``. On the CPU a block of at
    least ``_CHOLESKY_QR_ROWS`` rows takes a Cholesky QR in float64
    (:func:`_cholesky_qr`: a Gram product and a triangular solve, cheaper
    there than LAPACK's ``geqrf`` and ``orgqr``; on shorter blocks their
    fixed costs and the conditioning test outweigh the saving) when it is
    well conditioned; every other block takes Householder QR
    (``torch.linalg.qr``), as do all blocks on other devices, where it needs
    no conditioning test and so no host read.
    """
    cholesky = Y.device.type == "cpu" and Y.shape[0] >= _CHOLESKY_QR_ROWS
    for _ in range(2):
        if basis is not None:
            Y = Y - basis @ (basis.T @ Y)
        Q = _cholesky_qr(Y) if cholesky else None
        Y = Q if Q is not None else torch.linalg.qr(Y).Q
    return Y


def _cholesky_qr(Y, min_ratio=1e-4):
    """``Q`` of ``Y = Q R`` by Cholesky QR in float64, or None where ``Y`` is ill-conditioned.

    ``R`` is the Cholesky factor of ``Y^T Y`` (float64). Cholesky QR loses
    about ``cond(Y)^2`` float64 roundings in orthogonality: refused (None)
    when the factorisation fails or ``R``'s diagonal spans more than
    ``1 / min_ratio`` (``cond(Y)`` above about ``1e4``), so a kept ``Q`` is
    orthonormal to float32 rounding after one pass and to float64 rounding
    after the second pass of :func:`_orthonormalize`.
    """
    Y64 = Y.to(torch.float64)
    R, info = torch.linalg.cholesky_ex(Y64.T @ Y64, upper=True)
    d = R.diagonal()
    if not bool((info == 0) & (d.min() > min_ratio * d.max())):  # False for NaN too
        return None
    return torch.linalg.solve_triangular(R, Y64, upper=True, left=False).to(Y.dtype)


def randomized_svd(A, n_components, *, n_oversamples=10, n_iter="auto", generator=None,
                   tol=2e-2, value_tol=None, max_iter=20, block_size=None, At=None,
                   total=None, compute_u=True, compute_v=True, return_info=False):
    r"""Randomized block Krylov truncated SVD, dense or sparse.

    The range finder of Halko, Martinsson and Tropp (2011) keeps only the last
    block of its power iterations; the block Krylov method of Musco and
    Musco (2015) keeps them all. Let ``F`` be ``A`` or ``A.T``, whichever is
    wide, with ``s`` rows. A Gaussian test matrix ``Omega`` of
    ``b = n_components + n_oversamples`` columns starts the Krylov space

    .. math:: \mathcal{K}_q = \mathrm{span}[F\Omega,\ (FF^T)F\Omega,\ \dots,\ (FF^T)^q F\Omega],

    whose orthonormal basis ``Q = [Q_0, ..., Q_q]`` (``s x (q+1)b``) is built
    block by block, each new block orthogonalised against the previous ones.
    The Rayleigh-Ritz step then solves the small symmetric eigenproblem of
    ``T = Q^T F F^T Q`` in float64: its top ``k`` eigenpairs ``(s_i^2, e_i)``
    give the singular values ``s_i`` and the short-side singular vectors
    ``Q e_i``; the long-side ones are ``F^T Q e_i / s_i``.

    ``T`` is block tridiagonal (``F F^T Q_i`` lies in the span of ``Q_0`` to
    ``Q_{i+1}``, as in block Lanczos) and each of its blocks is read off
    products the iteration computes anyway (``Q_{i+1}^T F F^T Q_i`` when
    ``Q_{i+1}`` is made, ``||F^T Q_i||^2`` on the diagonal); the basis is the
    only thing kept. So ``q`` Krylov steps cost ``2q + 2`` passes over
    ``A`` (products with ``b`` columns), as ``q`` power iterations do, but
    search a space ``q + 1`` times wider: for the same accuracy it needs far
    fewer passes on flat spectra (Musco and Musco 2015, Theorem 1: error
    ``(1 + eps)`` after ``O(log(n) / sqrt(eps))`` steps, against
    ``O(log(n) / eps)`` for power iterations). For dense ``A`` the products
    ``F^T Q_i`` are kept (their size is at most ``A``'s), so the long-side
    vectors cost no pass; for sparse ``A`` they are recomputed in one pass
    of ``k`` columns when asked for.

    A dense ``F`` with a short side of at most ``12 b`` (e.g. the 427 x 1920
    ``china.jpg`` matrix at k = 100) takes the Gram path: ``G = F F^T``
    (``s x s``, one symmetric product, which costs ``s / 4b`` steps' worth of
    passes) is formed once, each step then multiplies by ``G`` (``2 s^2 b``
    flops instead of ``4 s L b``), the space starts from ``G Omega`` with a
    Gaussian ``Omega`` of ``s`` rows, and the long-side vectors take one pass
    of ``k`` columns. It is the same Krylov space (one half-step further),
    so the same accuracy, for fewer flops while ``s <= 12 b``.

    ``n_iter="auto"`` stops when a step no longer pays: after each pass
    ``F^T Q_i`` the energy captured by the top ``k`` Ritz values,
    ``e_i = sum_{j<=k} s_j^2``, is known with no extra pass, and the squared
    rank-k error of the result is exactly ``||A||_F^2 - e_i``. The gains
    ``g_i = e_i - e_{i-1}`` shrink about geometrically, so the gains still to
    come are estimated as ``g_i r / (1 - r)`` with ``r = g_i / g_{i-1}``
    (capped at 0.9; ``g_i`` alone while only one gain is known); the
    iteration stops once that estimate is at most ``tol`` times the squared
    error left, i.e. when the squared error is within about ``1 + tol`` of
    what more steps would reach (or after ``max_iter`` steps, or when the
    space fills the short side). ``value_tol`` adds a rule on each of the
    ``k`` values, for callers that read them one by one (the compressor's
    ``singular_values_`` and ``explained_variance_ratio_``).

    Parameters
    ----------
    A : torch.Tensor, ndarray or scipy.sparse matrix of shape (m, n)
        Dense, or sparse (torch sparse CSR or any scipy format); never
        densified. Work happens on ``A``'s device and dtype.
    n_components : int
        Rank ``k`` of the result, ``1 <= k <= min(m, n)``.
    n_oversamples : int, default=10
        The Krylov space has at least ``k + n_oversamples`` dimensions.
    block_size : int, default=None
        Columns ``b`` of each Krylov block (capped at ``min(m, n)``). None
        means a third of ``k + n_oversamples`` rounded up to a multiple of 8
        (at least 16): the space then grows by ``b`` per step and the
        stopping rule can stop at a finer grain. Measured on the 427 x 1920
        ``china.jpg`` matrix, a 4096 x 12288 image and a 200,000 x 50,000
        sparse matrix at k = 100 (``benchmarks/bench_compression.py``), 40
        columns reached the same error in fewer passes-times-columns than 110.
        When the passes are GEMMs over a dense ``A`` (no Gram path), a half
        (56 at k = 100): see :func:`default_block_size`.
    n_iter : int or "auto", default="auto"
        Number of Krylov steps ``q`` (0 is the plain randomized range finder).
    generator : torch.Generator, default=None
        CPU generator seeding the Gaussian test matrix. On the CPU it draws
        the matrix; on another device one draw of it seeds a generator of
        that device, which draws the matrix there (no host-to-device copy):
        a seed fixes the result on each kind of device, but a CPU and a GPU
        start from different matrices.
    tol : float, default=2e-2
        Stopping tolerance of ``n_iter="auto"``: the squared rank-k error is
        kept within about ``1 + tol`` of what further steps would reach, so
        the default aims at a Frobenius error within 1% of the converged one
        (the estimate of the gains to come is conservative: measured at
        k = 100, the error ratio to the exact optimum was 1.0007 and 1.005 on the
        ``china.jpg`` matrix and a 4096 x 12288 image).
    value_tol : float, default=None
        Per-value stopping tolerance of ``n_iter="auto"``, on top of ``tol``:
        the iteration also goes on until each of the top ``k`` Ritz values
        ``s_i^2`` is estimated to be within ``2 value_tol`` (relative) of its
        limit, so each singular value within about ``value_tol`` (Ritz
        values of a growing Krylov space rise monotonically towards the exact
        ``s_i^2``, and the rise still to come is extrapolated from the gains
        of the last three steps). The estimate is
        conservative: measured with ``value_tol=2e-2`` on the ``china.jpg``
        matrix and a 1024 x 3072 image at k = 20 and 100, the largest
        relative error of a singular value was 6e-5 to 2e-3
        (``benchmarks/bench_compression.py --accuracy``). The singular
        vectors converge with their values (a vector's error is about the
        square root of its value's, over the relative gap to its
        neighbours). None: the Frobenius rule alone, which leaves the
        trailing values of the k rough (a few percent).
    max_iter : int, default=20
        Cap on Krylov steps with ``n_iter="auto"``. Whatever ``n_iter``, the
        space is also capped at ``4 (k + n_oversamples)`` dimensions (and at
        ``min(m, n)``), which bounds its memory.
    At : torch.Tensor, default=None
        ``A.T`` as a sparse CSR tensor, when the caller already has it (torch
        path off the CPU only; the CPU path needs no transposed copy).
    total : float, default=None
        ``||A||_F^2``, when the caller has it (``n_iter="auto"`` needs it).
    compute_u, compute_v : bool, default=True
        Whether to return ``U`` (``Vt``). The factor on ``A``'s short side
        always comes for free; skipping the long one saves a pass on sparse
        input. A factor not computed is returned as ``None``.
    return_info : bool, default=False
        Also return a dict with ``n_iter`` (Krylov steps ``q``), ``passes``
        (products with ``A`` or ``A.T``; forming the Gram matrix counts as
        one), ``block_size`` and ``gram`` (whether the Gram path was taken).

    Returns
    -------
    U : (m, k), S : (k,), Vt : (k, n) torch.Tensor (and ``info`` if asked).

    References
    ----------
    C. Musco and C. Musco, "Randomized block Krylov methods for stronger and
    faster approximate singular value decomposition", NeurIPS 2015.

    Examples
    --------
    >>> import torch
    >>> from sksvd.linalg import randomized_svd
    >>> A = torch.randn(60, 6, generator=torch.Generator().manual_seed(0)) @ torch.randn(6, 40)
    >>> U, S, Vt = randomized_svd(A, 3, generator=torch.Generator().manual_seed(0))
    >>> torch.allclose(S, torch.linalg.svdvals(A)[:3], rtol=1e-3)
    True
    """
    m, n = A.shape
    k = int(n_components)
    if not 1 <= k <= min(m, n):
        raise ValueError(f"n_components={k}: expected an int in [1, {min(m, n)}]")
    op = _Operator(A, At)
    if op.backend != "host":
        return _block_krylov(op, A, k, n_oversamples, n_iter, generator, tol, max_iter,
                             block_size, total, compute_u, compute_v, return_info, value_tol)
    # On the CPU only the passes over A run threaded (BLAS's threads for a dense A,
    # scipy's kernels on worker threads for a sparse one); the small dense steps (QR,
    # Gram-Schmidt, eigh) and torch's elementwise ops run on one thread: threaded
    # small LAPACK/BLAS calls stall on thread-pool barriers, most of all on a busy
    # machine, and one thread makes their rounding independent of the thread count.
    with single_threaded():
        return _block_krylov(op, A, k, n_oversamples, n_iter, generator, tol, max_iter,
                             block_size, total, compute_u, compute_v, return_info, value_tol)


_GRAM_STEPS = 3  # use the Gram matrix when it costs at most this many steps' passes


class _StopRule:
    """The stopping rules of :func:`randomized_svd` with ``n_iter="auto"``, step by step.

    :meth:`test` takes the top-k Ritz values of a step (squared singular
    values, descending) as a numpy array (CPU path) or a float64 tensor on
    the device, and returns whether to stop as a numpy bool or a 0-d bool
    tensor: the device path computes on the device and the caller reads
    one scalar per step.

    - Frobenius rule: the energy ``e = sum_i theta_i`` gains ``g`` per step;
      the gains still to come are extrapolated as ``g r / (1 - r)`` with
      ``r = g / g'`` (capped at 0.9; ``g`` alone while one gain is known), and
      must be at most ``tol (||A||_F^2 - e)``.
    - Per-value rule (``value_tol``): Ritz values of nested subspaces never
      decrease and never exceed the exact ``s_i^2`` (Courant-Fischer), so
      each gain ``g_i >= 0`` is progress towards ``s_i^2``. The gains still
      to come are extrapolated as ``g_i r / (1 - r)``, with ``r`` the larger
      of the last two ratios of successive summed gains ``sum_i g_i`` (capped
      at 0.9, and 0.9 while fewer than three gains are known: a single fast
      step early on is not trusted), and must be at most ``2 value_tol
      theta_i`` (each ``s_i`` within about ``value_tol``, relative, of its
      limit). The rate is taken from the summed gains, not value by value:
      one value's ratio of gains turns to noise once its gains near
      rounding, or when a direction new to the space enters the top k and
      the sorted values shift by one, while the summed gains, led by the
      slowest values (the largest gains), keep the space's rate.
    """

    def __init__(self, tol, value_tol, total):
        self.tol, self.value_tol, self.total = tol, value_tol, total
        self.energy = self.gain = self.values = None
        self.gains = []  # per-value gains of the last two steps

    def test(self, values):
        xp = np if isinstance(values, np.ndarray) else torch
        energy = values.sum()
        done = None
        if self.energy is not None:
            gain = (energy - self.energy).clip(min=0.0)
            if self.gain is None:
                ahead = gain
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    rho = xp.where(self.gain > 0, gain / self.gain, 1.0).clip(max=0.9)
                    ahead = xp.where(self.gain > 0, gain * rho / (1.0 - rho), gain)
            done = ahead <= self.tol * (self.total - energy).clip(min=0.0) + 1e-7 * self.total
            gains = (values - self.values).clip(min=0.0)
            if self.value_tol is not None:
                done = done & self._values_converged(values, gains, xp)
            self.gains = [*self.gains[-1:], gains]
            self.gain = gain
        self.energy, self.values = energy, values
        return done

    def expects_stop(self):
        """Whether the next :meth:`test` is expected to stop (host path only).

        The next values are predicted as the last ones plus the last gains
        times the current rate of the summed gains, and the rules are run on
        that prediction (on a copy: nothing of the rule changes). The caller
        then asks that step's eigenvectors with its values, which saves a
        second eigensolve of the same matrix when the step does stop.
        """
        if len(self.gains) < 2 or not isinstance(self.values, np.ndarray):
            return False
        g1, g0 = (float(g.sum()) for g in self.gains)
        if g1 <= 0:
            return True  # no gain left: the next test stops unless a value jumps
        probe = copy.copy(self)
        return bool(probe.test(self.values + self.gains[-1] * min(g0 / g1, 0.9)))

    def _values_converged(self, values, gains, xp):
        if len(self.gains) < 2:
            rho = 0.9
        else:
            g2, g1 = (g.sum() for g in self.gains)
            g0 = gains.sum()
            with np.errstate(divide="ignore", invalid="ignore"):
                r1 = xp.where(g1 > 0, g0 / g1, 0.0)
                r0 = xp.where(g2 > 0, g1 / g2, 0.0)
            rho = xp.maximum(r0, r1).clip(max=0.9)
        ahead = gains * rho / (1.0 - rho)
        floor = 1e-14 * self.total  # values at rounding level have converged
        return (ahead <= 2.0 * self.value_tol * values + floor).all()


def _block_krylov(op, A, k, n_oversamples, n_iter, generator, tol, max_iter, block_size,
                  total, compute_u, compute_v, return_info, value_tol=None):
    """The body of :func:`randomized_svd` on the operator ``op`` of ``A``."""
    s, L = op.shape
    want = min(k + int(n_oversamples), s)  # dimensions the space needs at least
    dense = not (sp.issparse(A) or (isinstance(A, torch.Tensor) and _is_sparse(A)))
    b, use_gram = _krylov_plan(s, want, dense, block_size)
    # The last block is cut so that the space never exceeds s, and the space is
    # capped at 4 (k + n_oversamples) dimensions: the basis is its memory.
    max_steps = -(-min(s, 4 * want) // b) - 1
    min_steps = min(-(-want // b) - 1, max_steps)  # until (q + 1) b >= want
    auto = n_iter == "auto"
    steps = min(int(max_iter) if auto else max(int(n_iter), min_steps), max_steps)
    if auto and total is None:
        total = squared_frobenius_norm(A)

    dim = min(s, (steps + 1) * b)
    gram = op.gram() if use_gram else None
    keep_long = dense and gram is None and (compute_u if op.transposed else compute_v)
    # The basis Q and (dense input) the products Z_i = F^T Q_i, block by block,
    # stored block-row-major (Q is a transposed view) so that only the blocks
    # written are ever touched in memory.
    Q = torch.empty(dim, s, dtype=op.dtype, device=op.device).T
    Zs = torch.empty(dim, L, dtype=op.dtype, device=op.device).T if keep_long else None
    # Omega Gaussian, (L, b) for F Omega, or (s, b) for G Omega = F (F^T Omega) (G's
    # product read A once); drawn where it is used.
    gen = _device_generator(generator, op.device)
    omega = torch.randn(L if gram is None else s, b, generator=gen, dtype=op.dtype,
                        device=op.device)
    Q[:, :b] = _orthonormalize(op.matmat(omega) if gram is None else gram @ omega)
    passes = 1
    del omega
    # T, float64: on the host for the CPU path (calloc'd memory: only the blocks
    # written become resident), on the device for the torch path, where the
    # stopping rule then reads one scalar per step and nothing else leaves the device.
    on_device = op.backend == "torch"
    if on_device:
        T = torch.zeros((dim, dim), dtype=torch.float64, device=op.device)
    else:
        T = torch.from_numpy(np.zeros((dim, dim)))
    rule = _StopRule(tol, value_tol, total) if auto else None
    pairs = None  # (hi, top-k eigenpairs of T[:hi, :hi]) of a test that asked for them
    i, lo, hi = 0, 0, b
    while True:
        if gram is None:
            Z = op.rmatmat(Q[:, lo:hi])  # F^T Q_i, (L, b_i)
            passes += 1
            D = Z.T @ Z  # ||F^T Q_i||^2
            if keep_long:
                Zs[:, lo:hi] = Z
        else:
            W = gram @ Q[:, lo:hi]  # F F^T Q_i, from the Gram matrix
            D = Q[:, lo:hi].T @ W
        D = D.to(torch.float64)
        T[lo:hi, lo:hi] = ((D + D.T) * 0.5).to(T.device)
        if i >= steps or hi >= s:  # done, or the space is the whole short side (exact)
            break
        if auto and i >= min_steps:
            if on_device:
                values = _top_eigh(T[:hi, :hi], k, vectors=False).clamp_min(0)
            elif rule.expects_stop():  # the pairs now, kept for the end if it stops here
                pairs = hi, _top_eigh(T[:hi, :hi], k)
                values = pairs[1][0].clamp_min(0).numpy()
            else:
                values = _top_eigh(T[:hi, :hi], k, vectors=False).clamp_min(0).numpy()
            done = rule.test(values)
            if done is not None and bool(done):  # the one scalar read of a step
                break
        if gram is None:
            W = op.matmat(Z)  # F F^T Q_i
            passes += 1
            del Z
        nxt = min(hi + b, s)  # the last block is cut to what is left of s
        Q[:, hi:nxt] = _orthonormalize(W[:, :nxt - hi], Q[:, :hi])
        # T is block tridiagonal: F F^T Q_i lies in span(Q_0..Q_{i+1}) (to rounding,
        # with the basis fully reorthogonalised), so Q_j^T F F^T Q_i = 0 for j > i + 1.
        C = (Q[:, hi:nxt].T @ W).to(torch.float64).to(T.device)
        T[hi:nxt, lo:hi] = C
        T[lo:hi, hi:nxt] = C.T
        del W
        i, lo, hi = i + 1, hi, nxt
    used_gram, gram = gram is not None, None
    if pairs is not None and pairs[0] == hi:  # the last test's pairs: T is unchanged
        evals, evecs = pairs[1]
    else:
        evals, evecs = _top_eigh(T[:hi, :hi], k)
    del T, pairs
    S64 = evals.clamp_min(0).sqrt().to(op.device)
    E = evecs.to(device=op.device, dtype=op.dtype)
    short = Q[:, :hi] @ E  # (s, k) left singular vectors of F
    del Q
    need_long = compute_u if op.transposed else compute_v
    long_ = None
    if need_long:
        # (lean: the peak memory of a sparse fit is reached around this pass)
        FtU = Zs[:, :hi] @ E if keep_long else op.rmatmat(short, lean=True)
        if not keep_long:
            passes += 1
        safe = torch.where(S64 > 0, S64, torch.ones_like(S64)).to(op.dtype)
        long_ = FtU.div_(safe)  # in place: FtU is ours
    del Zs
    S = S64.to(op.dtype)
    if op.transposed:  # A = F.T ~= long S short^T
        U, Vt = long_, short.T
    else:
        U, Vt = short, (long_.T if long_ is not None else None)
    U, Vt = _flip_signs(U, Vt)
    if not compute_u:
        U = None
    if not compute_v:
        Vt = None  # (computed anyway when it lies on the short side: it fixed the signs)
    if return_info:
        return U, S, Vt, {"n_iter": i, "passes": passes, "block_size": b,
                          "gram": used_gram}
    return U, S, Vt


def _device_generator(generator, device):
    """The generator the test matrix is drawn with on ``device``.

    On the CPU (or when ``generator`` already belongs to ``device``),
    ``generator`` itself. Elsewhere a generator of that device,
    seeded by one draw of ``generator`` (so a seed still fixes the result on
    a given kind of device; a CPU and a GPU draw different matrices), so
    that the matrix is made where it is used instead of being copied there.
    """
    if device.type == "cpu" or (generator is not None and generator.device == device):
        return generator
    gen = torch.Generator(device=device)
    if generator is None:
        gen.seed()
    else:
        gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
    return gen


def _krylov_plan(s, want, dense, block_size=None):
    """``(b, use_gram)``: the block size and whether the Gram path is taken.

    A short, dense ``F`` takes the Gram path (see :func:`randomized_svd`):
    ``G = F F^T`` costs ``s / (4 b)`` steps' worth of passes, after which a step
    costs ``2 s^2 b`` flops instead of ``4 s L b``. Without ``block_size``, dense
    passes over ``A`` (no Gram path) take the wider block of
    :func:`default_block_size`: they are GEMMs, whose rate grows with the width.
    """
    b = min(int(block_size) if block_size is not None else default_block_size(want), s)
    if b < 1:
        raise ValueError(f"block_size={block_size}: expected an int >= 1")
    use_gram = dense and _GRAM_STEPS * 4 * b >= s
    if block_size is None and dense and not use_gram:
        b = min(default_block_size(want, dense_passes=True), s)
    return b, use_gram


def default_block_size(dims, dense_passes=False):
    """Block size of :func:`randomized_svd` for a Krylov space of at least ``dims`` dimensions.

    A third of ``dims`` rounded up to a multiple of 8, at least ``min(dims, 16)``;
    a half with ``dense_passes`` (the passes are GEMMs over a dense ``A``, whose
    rate grows with the block width, so wider blocks reach the same error in
    fewer steps for the same time). Sparse passes and the Gram path keep the
    third: the space grows by smaller steps, so the stopping rule stops at a
    finer grain (the comparison is in ``benchmarks/bench_compression.py``).

    Examples
    --------
    >>> from sksvd.linalg import default_block_size
    >>> default_block_size(110), default_block_size(12), default_block_size(110, True)
    (40, 12, 56)
    """
    parts = 16 if dense_passes else 24
    return max(min(dims, 16), -(-dims // parts) * 8)


def _top_eigh(T, k, vectors=True):
    """Top ``k`` eigenpairs (or values) of the symmetric float64 matrix ``T``, descending.

    Values alone, and pairs of a small ``T``: ``torch.linalg.eigvalsh`` /
    ``eigh`` (LAPACK's divide and conquer). Pairs of a large ``T``: scipy's
    ``syevr`` on the top ``k`` only, whose subset saves the back-transform of
    the vectors not wanted once ``T`` passes a few hundred rows (measured on
    one thread; the host path calls this single-threaded). Off the CPU,
    torch's solver at every size (nothing is read back to the host).
    """
    r = T.shape[0]
    k = min(k, r)
    if not vectors:
        return torch.linalg.eigvalsh(T).flip(0)[:k]
    if r < 600 or T.device.type != "cpu":
        w, v = torch.linalg.eigh(T)
        return w.flip(0)[:k], v.flip(1)[:, :k]
    import scipy.linalg

    # T is symmetric as built; LAPACK reads one triangle of this (Fortran) copy.
    M = np.array(T.numpy(), order="F")
    w, v = scipy.linalg.eigh(M, subset_by_index=[r - k, r - 1], overwrite_a=True,
                             check_finite=False, driver="evr")
    return torch.from_numpy(w[::-1].copy()), torch.from_numpy(v[:, ::-1].copy())


def _flip_signs(U, Vt):
    """:func:`svd_flip` in place on the caller's own factors; with one factor, on that one."""
    if Vt is not None:
        signs = _row_signs(Vt)
        if U is not None:
            U.mul_(signs)
        return U, Vt.mul_(signs[:, None])
    # Only U: largest |entry| of each column of U positive (U's own convention).
    return U.mul_(_row_signs(U.T)), None


def gram_svd(A, n_components, At=None):
    """Exact truncated SVD through the Gram matrix of the short side, in float64.

    For ``A`` of shape (m, n) with ``n <= m`` the (n, n) Gram matrix
    ``G = A^T A`` is formed (a sparse-sparse product when ``A`` is sparse,
    so ``A`` itself is never densified), ``G = V diag(s^2) V^T`` is solved by
    ``torch.linalg.eigh`` in float64, and ``U = A V / s``. Memory is
    ``O(min(m, n)^2)``: this is the exact solver for matrices with a short
    side of a few thousand (e.g. MovieLens' items), where Krylov and
    randomized methods struggle with the tiny gaps of the spectrum.

    Singular values below ``1e-7 s_1`` lose relative accuracy (squared in
    the Gram matrix); the top ones are exact to float64 rounding.

    Parameters
    ----------
    A : torch.Tensor of shape (m, n), dense or sparse CSR
    n_components : int in [1, min(m, n)]
    At : torch.Tensor, default=None
        ``A.T`` as sparse CSR, when the caller has it.

    Returns
    -------
    U : (m, k), S : (k,), Vt : (k, n) torch.Tensor in ``A``'s dtype, signs flipped.

    Examples
    --------
    >>> import torch
    >>> from sksvd.linalg import gram_svd
    >>> U, S, Vt = gram_svd(torch.diag(torch.tensor([1.0, 3.0, 2.0])), 2)
    >>> S
    tensor([3., 2.])
    """
    m, n = A.shape
    k = int(n_components)
    if not 1 <= k <= min(m, n):
        raise ValueError(f"n_components={k}: expected an int in [1, {min(m, n)}]")
    transpose = m < n  # Gram of the short side: B = A.T when A is wide
    B = (At if At is not None else _transpose(A)) if transpose else A
    Bt = A if transpose else (At if At is not None else _transpose(A))
    B64, Bt64 = B.to(torch.float64), Bt.to(torch.float64)
    if _is_sparse(B):
        G = torch.sparse.mm(Bt64, B64).to_dense()
    else:
        G = Bt64 @ B64
    r = G.shape[0]
    if G.device.type == "cpu":
        # LAPACK's syevr for the top k pairs only: the full decomposition of
        # torch.linalg.eigh (syevd) computes every pair.
        import scipy.linalg

        w, vecs = scipy.linalg.eigh(G.numpy(), subset_by_index=[r - k, r - 1])
        evals, evecs = torch.from_numpy(w), torch.from_numpy(vecs)
    else:
        evals, evecs = torch.linalg.eigh(G)
        evals, evecs = evals[r - k:], evecs[:, r - k:]
    evals = evals.flip(0).clamp_min(0)
    V = evecs.flip(1)  # right singular vectors of B, descending
    S = evals.sqrt()
    left = sparse_matmul(B64, V)
    left = left / torch.where(S > 0, S, torch.ones_like(S))
    if transpose:  # A = B.T = V S left^T
        U, Vt = V, left.T
    else:
        U, Vt = left, V.T
    U, Vt = svd_flip(U, Vt)
    dt = A.dtype
    return U.to(dt), S.to(dt), Vt.to(dt)


def choose_algorithm(shape, n_components, sparse=False):
    """The solver ``algorithm="auto"`` picks: "full" for small dense problems, else "randomized".

    As :class:`sklearn.decomposition.PCA`: exact when ``max(m, n) <= 500`` or
    the rank is at least 80% of ``min(m, n)``; sparse input is always
    randomized (the exact SVD would densify it).

    Examples
    --------
    >>> from sksvd.linalg import choose_algorithm
    >>> choose_algorithm((427, 1920), 100)
    'randomized'
    """
    m, n = shape
    if sparse:
        return "randomized"
    if max(m, n) <= 500 or n_components >= 0.8 * min(m, n):
        return "full"
    return "randomized"


def truncated_svd(X, n_components, *, algorithm="auto", n_oversamples=10, n_iter="auto",
                  tol=2e-2, random_state=None, device="cpu", dtype=torch.float32):
    """Truncated SVD of a numpy array or scipy sparse matrix, computed in torch.

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix of shape (m, n)
    n_components : int in [1, min(m, n)]
    algorithm : {"auto", "full", "randomized"}, default="auto"
        See :func:`choose_algorithm`.
    n_oversamples, n_iter, tol :
        Passed to :func:`randomized_svd`.
    random_state : int, RandomState or None
    device : str or torch.device, default="cpu"
    dtype : torch.dtype or str, default=torch.float32

    Returns
    -------
    U : ndarray (m, k), S : ndarray (k,), Vt : ndarray (k, n), in ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd.linalg import truncated_svd
    >>> X = np.diag([3.0, 2.0, 1.0])
    >>> U, S, Vt = truncated_svd(X, 2, algorithm="full")
    >>> S
    array([3., 2.], dtype=float32)
    """
    import scipy.sparse as sp

    from ._validation import check_n_components

    device = resolve_device(device)
    dtype = resolve_dtype(dtype)
    sparse = sp.issparse(X)
    n_components = check_n_components(n_components, n_samples=X.shape[0],
                                      n_features=X.shape[1], allow_float=False)
    if algorithm == "auto":
        algorithm = choose_algorithm(X.shape, n_components, sparse)
    if algorithm not in ("full", "randomized"):
        raise ValueError(f"algorithm={algorithm!r}: expected 'auto', 'full' or 'randomized'")
    A = to_torch(X, device=device, dtype=dtype)
    if algorithm == "full":
        U, S, Vt = exact_svd(A, n_components)
    else:
        At = None
        if sparse:
            At = to_torch(X.T.tocsr(), device=device, dtype=dtype)
        U, S, Vt = randomized_svd(A, n_components, n_oversamples=n_oversamples, n_iter=n_iter,
                                  tol=tol, generator=make_generator(random_state), At=At)
    return to_numpy(U), to_numpy(S), to_numpy(Vt)
