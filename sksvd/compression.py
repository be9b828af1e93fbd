"""Low-rank compression of a matrix by truncated SVD: :class:`TruncatedSVDCompressor`.

The estimator is thin scikit-learn glue around the torch kernels of
:mod:`sksvd.linalg`: validate -> move to torch on the device -> exact or
randomized SVD -> fitted attributes back as numpy arrays.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.sparsefuncs import mean_variance_axis
from sklearn.utils.validation import check_is_fitted

from ._backend import (
    make_generator,
    numpy_dtype,
    resolve_device,
    resolve_dtype,
    svd_operands,
    to_numpy,
    to_torch,
)
from ._threads import n_workers, thread_map, torch_threads
from ._validation import check_matrix, check_n_components, check_values_from_norm
from .linalg import (
    choose_algorithm,
    exact_svd,
    randomized_svd,
    singular_values,
    squared_frobenius_norm,
)

__all__ = ["TruncatedSVDCompressor"]


# Elements of the float64 row block of _column_moments (1 MiB: it stays in cache
# between the copy, the shift and the two column sums that read it).
_MOMENT_BLOCK = 2**17


def _column_moments(X):
    """``(||X||_F^2, column variances)`` of a dense matrix, in one pass of float64 row blocks.

    The variances are accumulated on data shifted by the first row (the
    shifted-data algorithm: ``var = mean((x - c)^2) - mean(x - c)^2`` loses
    only what ``(mean - c)^2 / var`` costs, instead of ``mean^2 / var``), so
    they agree with ``np.var(X, axis=0)`` to rounding without a second pass
    or an X-size temporary. Each row block is copied into one reused,
    cache-sized float64 buffer and shifted, summed, squared and summed there
    in place. Matrices over 16 MB are split into row ranges summed on worker
    threads (:func:`sksvd._threads.n_workers`).
    """
    m, n = X.shape
    block = max(1, _MOMENT_BLOCK // max(n, 1))
    shift = np.asarray(X[:1], dtype=np.float64)

    def part(lo, hi):
        col_sum, col_sq = np.zeros(n), np.zeros(n)
        buf = np.empty((max(0, min(block, hi - lo)), n))
        for start in range(lo, hi, block):
            rows = buf[:min(block, hi - start)]
            np.copyto(rows, X[start:start + rows.shape[0]])  # a copy: X is kept
            rows -= shift
            col_sum += rows.sum(axis=0)
            rows *= rows
            col_sq += rows.sum(axis=0)
        return col_sum, col_sq

    # Large matrices: row ranges on worker threads (numpy releases the GIL here);
    # the partial sums share the shift, so they simply add up.
    workers = n_workers(X.nbytes // (8 * 2**20))
    cuts = np.linspace(0, m, workers + 1).astype(int)
    parts = thread_map(lambda c: part(*c), zip(cuts[:-1], cuts[1:], strict=True), workers)
    col_sum, col_sq = sum(p[0] for p in parts), sum(p[1] for p in parts)
    mean = col_sum / m
    # sum x^2 = sum (x - c)^2 + 2 c sum (x - c) + m c^2, column by column
    c = shift[0]
    total = float(np.sum(col_sq + c * (2.0 * col_sum + m * c)))
    return total, np.maximum(col_sq / m - mean * mean, 0.0)


def _energy_and_variance(X):
    """``(||X||_F^2, np.var(X, axis=0).sum())`` in float64, without an X-size temporary.

    Sparse input uses :func:`sklearn.utils.sparsefuncs.mean_variance_axis`
    (never densified) and a blocked float64 sum of squares of the stored values.
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        total = squared_frobenius_norm(X)
        _, var = mean_variance_axis(X, axis=0)
        return total, float(np.sum(var, dtype=np.float64))
    total, var = _column_moments(X)
    return total, float(var.sum())


def _input_nbytes(X):
    """Bytes of ``X`` as given: a dense array's ``nbytes``, a sparse matrix's three arrays."""
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        return int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)
    return int(X.nbytes)


def _factor_nbytes(m, n, k, factor_dtype):
    """Bytes of the stored factors ``U_k diag(s_k)`` (m, k) and ``V_k^T`` (k, n).

    uint8 factors add a float32 scale and offset per component and factor
    (``16 k`` bytes), as :class:`sksvd.image.CompressedImage` stores them.
    """
    extra = 16 * k if factor_dtype == "uint8" else 0
    return k * (m + n) * np.dtype(factor_dtype).itemsize + extra


def _smallest_rank(cumulative, share):
    """Smallest ``k`` (1-based) with ``cumulative[k - 1] >= share`` (``len`` if none)."""
    k = int(np.searchsorted(cumulative, share - 1e-12 * max(share, 1.0), side="left")) + 1
    return min(k, len(cumulative))


class TruncatedSVDCompressor(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    r"""Rank-``k`` compression of a matrix by truncated SVD, exact or randomized.

    Fits ``X ~= U_k diag(s_k) V_k^T``, the best rank-``k`` approximation in
    Frobenius norm (Eckart-Young), with ``||X - X_k||_F^2 = sum_{i>k} s_i^2``.
    ``transform`` gives the scores ``X V_k`` (= ``U_k diag(s_k)`` on the
    training data) and ``inverse_transform`` maps them back, ``Z V_k^T``. As
    :class:`sklearn.decomposition.TruncatedSVD`, the data are not centred, so
    sparse input stays sparse (CSR in, torch sparse CSR inside).

    Parameters
    ----------
    n_components : int or float, default=2
        An int is the rank ``k`` (``1 <= k <= min(n_samples, n_features)``).
        A float in (0, 1) keeps the smallest rank whose singular values hold
        that share of the total, measured by ``criterion``; the exact
        spectrum it is read from is computed in float64 whatever ``dtype``
        and device, so a CPU and a GPU choose the same rank.
    criterion : {"energy", "singular_values"}, default="energy"
        What a float ``n_components`` is a share of. ``"energy"``:
        ``sum_{i<=k} s_i^2 / ||X||_F^2``, with ``||X||_F^2`` computed exactly
        from the entries (never from a truncated spectrum); with the randomized
        solver the rank is doubled until the share is reached, and the
        smallest rank that reaches it is kept. ``"singular_values"``:
        ``sum_{i<=k} s_i / sum_i s_i`` (share of the nuclear norm), which needs
        the full spectrum (computed exactly; sparse input is densified for it).
        On ``china.jpg`` (427 x 1920) 80% of the energy is reached at rank 1,
        80% of ``sum s_i`` at rank 144.
    algorithm : {"auto", "full", "randomized"}, default="auto"
        ``"full"``: ``torch.linalg.svd`` (sparse input is densified);
        ``"randomized"``: randomized block Krylov (Musco and Musco 2015, after
        Halko, Martinsson and Tropp 2011), see :func:`sksvd.linalg.randomized_svd`; ``"auto"``: see
        :func:`sksvd.linalg.choose_algorithm` (sparse input is always
        randomized).
    n_oversamples : int, default=10
        The randomized solver's space has at least ``k + n_oversamples``
        dimensions.
    n_iter : int or "auto", default="auto"
        Krylov steps of the randomized solver; ``"auto"`` stops when the
        rank-k Frobenius error is within about 1% of what more steps would
        reach and every singular value has converged to ``tol`` (see
        :func:`sksvd.linalg.randomized_svd`).
    tol : float, default=2e-2
        Relative accuracy aimed at for each of the ``k`` singular values by
        the randomized solver with ``n_iter="auto"`` (its ``value_tol``): the
        iteration goes on until the rise still expected of each Ritz value
        ``s_i^2``, extrapolated from the last three steps, is at most
        ``2 tol s_i^2``. The extrapolation is conservative: measured on the
        ``china.jpg`` matrix at k = 20 and 100, the largest relative error
        of ``singular_values_`` was 6e-4 and 2e-3, of
        ``explained_variance_ratio_`` 1e-3 and 4e-3, below scikit-learn's
        randomized ``TruncatedSVD`` (``benchmarks/results/compression_accuracy.md``).
        Smaller values cost more Krylov steps. Unused by the exact solver.
    factor_dtype : {"uint8", "float16", "float32", "float64"} or None, default=None
        Storage type counted by ``compression_ratio_`` (None: ``dtype``);
        uint8 as :class:`sksvd.image.CompressedImage` stores it, with a
        float32 scale and offset per component and factor.
    device : str or torch.device, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; the environment
        variable ``SKSVD_DEVICE`` overrides ``"auto"``.
    dtype : {"float32", "float64"}, default="float32"
        Working and storage precision of the factors.
    random_state : int, RandomState instance or None, default=None
        Seeds the randomized solver's test matrix.
    verbose : int, default=0
        Progress bar over the rank-growing rounds of a float ``n_components``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components_, n_features)
        Right singular vectors ``V_k^T``, signs as sklearn's ``svd_flip``.
        Exact solver: to ``dtype`` rounding. Randomized: each vector's angle
        to the exact one is about the square root of its value's relative
        error over the relative gap to the neighbouring values (vectors of
        nearly equal values mix; the subspace they span is accurate).
    singular_values_ : ndarray of shape (n_components_,)
        Descending. Exact solver: to ``dtype`` rounding. Randomized: each
        below the exact one (Ritz values never exceed it), within about
        ``tol`` relative (see ``tol``).
    n_components_ : int
        The rank kept.
    explained_variance_ : ndarray of shape (n_components_,)
        Variance of each column of ``X V_k`` (as ``TruncatedSVD``).
    explained_variance_ratio_ : ndarray of shape (n_components_,)
        ``explained_variance_ / np.var(X, axis=0).sum()``, exactly as
        :class:`sklearn.decomposition.TruncatedSVD` computes it (no
        densifying for sparse ``X``); the denominator is exact, each entry
        carries its component's error (about twice the singular value's
        relative error, randomized solver).
    energy_ratio_ : ndarray of shape (n_components_,)
        Cumulative ``sum_{i<=j} s_i^2 / ||X||_F^2``; ``1 - energy_ratio_[-1]``
        is the relative squared Frobenius error of the rank-``k`` fit
        (``||X||_F^2`` exact from the entries, in float64).
    compression_ratio_ : float
        Raw over compressed: bytes of ``X`` (dense: ``m n`` times its
        itemsize; sparse: its CSR arrays) over bytes of the factors
        ``U_k diag(s_k)`` and ``V_k^T`` in ``factor_dtype``,
        ``k (m + n) itemsize`` (``+ 16 k`` for uint8). Above 1 the factors
        are smaller than the input.
    n_iter_ : int
        Krylov steps done by the randomized solver (0 for the exact one).
    algorithm_ : str
        The solver used, ``"full"`` or ``"randomized"``.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` has string column names.

    See Also
    --------
    sklearn.decomposition.TruncatedSVD : the scikit-learn estimator this one mirrors.
    sksvd.image.compress_image : the same factorisation applied to images.

    References
    ----------
    C. Eckart and G. Young, "The approximation of one matrix by another of lower
    rank", Psychometrika 1(3), 1936.
    N. Halko, P.-G. Martinsson and J. A. Tropp, "Finding structure with randomness:
    probabilistic algorithms for constructing approximate matrix decompositions",
    SIAM Review 53(2), 2011.
    C. Musco and C. Musco, "Randomized block Krylov methods for stronger and
    faster approximate singular value decomposition", NeurIPS 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd.compression import TruncatedSVDCompressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 5)) @ rng.normal(size=(5, 40))
    >>> c = TruncatedSVDCompressor(n_components=5, random_state=0).fit(X)
    >>> c.components_.shape
    (5, 40)
    >>> bool(np.allclose(c.inverse_transform(c.transform(X)), X, atol=1e-4))
    True
    >>> TruncatedSVDCompressor(n_components=0.9).fit(X).n_components_ <= 5
    True
    """

    _parameter_constraints: dict = {
        "n_components": [
            Interval(Integral, 1, None, closed="left"),
            Interval(RealNotInt, 0, 1, closed="neither"),
        ],
        "criterion": [StrOptions({"energy", "singular_values"})],
        "algorithm": [StrOptions({"auto", "full", "randomized"})],
        "n_oversamples": [Interval(Integral, 0, None, closed="left")],
        "n_iter": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "factor_dtype": [StrOptions({"uint8", "float16", "float32", "float64"}), None],
        "device": [str, torch.device],
        "dtype": [str, type, np.dtype, torch.dtype],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, n_components=2, *, criterion="energy", algorithm="auto", n_oversamples=10,
                 n_iter="auto", tol=2e-2, factor_dtype=None, device="auto", dtype="float32",
                 random_state=None, verbose=0):
        self.n_components = n_components
        self.criterion = criterion
        self.algorithm = algorithm
        self.n_oversamples = n_oversamples
        self.n_iter = n_iter
        self.tol = tol
        self.factor_dtype = factor_dtype
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        """Fit the truncated SVD of ``X`` (:meth:`fit_transform` without the scores).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
            The matrix to factorise; sparse input stays sparse.
        y : None
            Ignored; present for scikit-learn's API.

        Returns
        -------
        self : TruncatedSVDCompressor
            The fitted estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from sksvd.compression import TruncatedSVDCompressor
        >>> TruncatedSVDCompressor(1).fit(np.diag([3.0, 1.0])).singular_values_
        array([3.], dtype=float32)
        """
        self.fit_transform(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """Fit and return the scores ``U_k diag(s_k)`` of the training data.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components_)
            In ``X``'s float dtype when that is float64 (as :meth:`transform`).

        Examples
        --------
        >>> import numpy as np
        >>> from sksvd.compression import TruncatedSVDCompressor
        >>> TruncatedSVDCompressor(1).fit_transform(np.diag([3.0, 1.0]))
        array([[3.],
               [0.]])
        """
        # NaN/inf and magnitudes are checked from ||X||_F^2 below (one pass, not three).
        X = check_matrix(X, estimator=self, reset=True, defer_value_checks=True)
        m, n = X.shape
        n_components = check_n_components(self.n_components, n_samples=m, n_features=n)
        with np.errstate(invalid="ignore", over="ignore"):
            total, full_var = _energy_and_variance(X)
        check_values_from_norm(X, total)
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype)
        if dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32  # linear algebra is not available in half precision
        sparse = sp.issparse(X)
        max_rank = min(m, n)

        algorithm = self.algorithm
        if algorithm == "auto":
            guess = n_components if isinstance(n_components, int) else 1
            algorithm = choose_algorithm((m, n), guess, sparse)
            if not isinstance(n_components, int) and self.criterion == "singular_values" \
                    and not sparse:
                algorithm = "full"  # the full spectrum is needed anyway
        # The operands of the kernels, moved once per fit (the rank-growing rounds reuse
        # them); with torch kernels, sparse X's transpose as CSR for the randomized solver.
        A, At = svd_operands(X, device, dtype, transpose=algorithm == "randomized")
        operands = (A, At, total)

        n_iter_done = 0
        if isinstance(n_components, int):
            if algorithm == "full":
                U, S, Vt = self._exact(A, n_components, device)
            else:
                U, S, Vt, n_iter_done = self._randomized(operands, n_components)
        elif self.criterion == "singular_values":
            if algorithm == "full":
                U, S, Vt = self._exact(A, max_rank, device, spectrum=True)
                spectrum = S
            else:
                with torch_threads(1):
                    spectrum = singular_values(self._as_tensor(A, device, dtype)
                                               .to(torch.float64))
            cum = torch.cumsum(spectrum.to(torch.float64), 0)
            cum = to_numpy(cum / cum[-1]) if float(cum[-1]) > 0 else np.ones(len(cum))
            k = _smallest_rank(cum, n_components)
            if algorithm == "full":
                U, S, Vt = U[:, :k], S[:k], Vt[:k]
            else:
                U, S, Vt, n_iter_done = self._randomized(operands, k)
        else:  # float share of the energy ||X||_F^2
            share = n_components * total
            if algorithm == "full":
                U, S, Vt = self._exact(A, max_rank, device, spectrum=True)
                k = self._rank_for_energy(S, share)
                U, S, Vt = U[:, :k], S[:k], Vt[:k]
            else:
                U, S, Vt, n_iter_done, algorithm = self._grow_rank(operands, sparse, share,
                                                                   device)
        out_dtype = numpy_dtype(dtype)
        U, S, Vt = to_numpy(U, out_dtype), to_numpy(S, out_dtype), to_numpy(Vt, out_dtype)
        k = S.shape[0]
        Z = np.multiply(U, S, out=U) if U.flags.writeable else U * S  # U is ours
        self.components_ = Vt
        self.singular_values_ = S
        self.n_components_ = int(k)
        self.n_iter_ = int(n_iter_done)
        self.algorithm_ = algorithm
        self.explained_variance_ = _column_moments(Z)[1].astype(out_dtype)
        if full_var > 0:
            ratio = self.explained_variance_.astype(np.float64) / full_var
        else:  # constant columns: no variance to explain
            ratio = np.zeros(k)
        self.explained_variance_ratio_ = ratio.astype(out_dtype)
        energy = np.cumsum(S.astype(np.float64) ** 2)
        self.energy_ratio_ = energy / total if total > 0 else np.ones_like(energy)
        self.compression_ratio_ = float(_input_nbytes(X) / _factor_nbytes(
            m, n, k, self.factor_dtype or np.dtype(out_dtype).name))
        # As transform: float64 input gives float64 scores (sklearn's dtype-preserving rule).
        return Z.astype(np.result_type(X.dtype, Z.dtype), copy=False)

    @staticmethod
    def _as_tensor(A, device, dtype=None):
        """``A`` as a torch tensor on ``device`` (numpy/scipy on the CPU path)."""
        if isinstance(A, torch.Tensor):
            return A
        return to_torch(A, device=device, dtype=dtype or resolve_dtype(A.dtype))

    def _exact(self, A, k, device, spectrum=False):
        """Exact truncated SVD (``torch.linalg.svd``), torch on one thread.

        Threaded LAPACK stalls on spinning OpenMP barriers when cores are
        oversubscribed, and the sizes factorised exactly here are small, so
        one thread costs little even on an idle machine (a GPU's SVD does not
        use torch's CPU threads).

        ``spectrum=True``: the rank is to be chosen from the singular values,
        so the SVD runs in float64 whatever ``dtype`` (on the device), and CPU
        and GPU choose the same rank; the factors are cast back by ``fit``.
        """
        T = self._as_tensor(A, device)
        if spectrum:
            T = T.to(torch.float64)
        with torch_threads(1):
            return exact_svd(T, k)

    def _randomized(self, operands, k):
        """One call of the randomized kernel at rank ``k`` on ``(A, At, ||X||_F^2)``: (U, S, Vt, n_iter)."""
        A, At, total = operands
        U, S, Vt, info = randomized_svd(A, k, n_oversamples=self.n_oversamples,
                                        n_iter=self.n_iter, value_tol=self.tol,
                                        generator=make_generator(self.random_state), At=At,
                                        total=total, return_info=True)
        return U, S, Vt, info["n_iter"]

    @staticmethod
    def _rank_for_energy(S, share):
        energy = np.cumsum(to_numpy(S).astype(np.float64) ** 2)
        return _smallest_rank(energy, share)

    def _grow_rank(self, operands, sparse, share, device):
        """Randomized SVD at ranks 16, 32, 64, ... until ``sum s_i^2 >= share``.

        The energy captured by a randomized rank-``j`` fit never exceeds the
        exact ``sum_{i<=j} s_i^2``, so the rank kept reaches the share for
        sure; it can exceed the exact smallest rank by the solver's error.
        Once the rank would pass 80% of ``min(m, n)`` the exact SVD is used.
        """
        A = operands[0]
        m, n = A.shape
        max_rank = min(m, n)
        k = min(16, max_rank)
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(desc="rank", unit="round", leave=False)
        try:
            while True:
                if k >= 0.8 * max_rank and not sparse:
                    U, S, Vt = self._exact(A, max_rank, device, spectrum=True)
                    j = self._rank_for_energy(S, share)
                    return U[:, :j], S[:j], Vt[:j], 0, "full"
                U, S, Vt, n_iter = self._randomized(operands, k)
                energy = np.cumsum(to_numpy(S).astype(np.float64) ** 2)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(rank=k, energy=float(energy[-1] / max(share, 1e-300)))
                if energy[-1] >= share * (1 - 1e-6) or k == max_rank:
                    j = _smallest_rank(energy, share * (1 - 1e-6))
                    return U[:, :j], S[:j], Vt[:j], n_iter, "randomized"
                k = min(2 * k, max_rank)
        finally:
            if bar is not None:
                bar.close()

    def transform(self, X):
        """Scores of ``X``: ``X @ components_.T``.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components_)

        Examples
        --------
        >>> import numpy as np
        >>> from sksvd.compression import TruncatedSVDCompressor
        >>> c = TruncatedSVDCompressor(1).fit(np.diag([3.0, 1.0]))
        >>> c.transform(np.array([[1.0, 1.0]]))
        array([[1.]])
        """
        check_is_fitted(self)
        X = check_matrix(X, estimator=self, reset=False)
        return safe_sparse_dot(X, self.components_.T)

    def inverse_transform(self, X):
        """Map scores back to the original space: ``X @ components_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components_)
            Scores, e.g. from :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)

        Examples
        --------
        >>> import numpy as np
        >>> from sksvd.compression import TruncatedSVDCompressor
        >>> c = TruncatedSVDCompressor(1).fit(np.diag([3.0, 1.0]))
        >>> c.inverse_transform(np.array([[3.0]]))
        array([[3., 0.]])
        """
        check_is_fitted(self)
        Z = check_matrix(X, name="X", accept_sparse=False)
        if Z.shape[1] != self.n_components_:
            raise ValueError(
                f"X has {Z.shape[1]} columns: expected n_components_={self.n_components_} "
                "(scores from transform)"
            )
        return Z @ self.components_

    @property
    def _n_features_out(self):
        """Number of output features, for ``get_feature_names_out``."""
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

