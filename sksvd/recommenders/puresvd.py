"""PureSVD: the truncated SVD of the users x items matrix as a recommender."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from .._backend import (
    csr_matmul_cpu,
    device_array,
    kernel_backend,
    make_generator,
    numpy_dtype,
    svd_operands,
    to_numpy,
    to_torch,
)
from .._validation import check_n_components
from ..linalg import exact_svd, gram_svd, randomized_svd
from ._base import BaseRecommender

__all__ = ["SVDRecommender"]

# Largest short side for which the exact Gram solver is the default (a 4096^2
# float64 Gram matrix is 128 MiB and its eigendecomposition a few seconds).
_GRAM_MAX = 4096
# n_components="auto": with the default shrinkage, the rank past which the extra
# components weigh little (chosen with it on validation splits of MovieLens).
_AUTO_RANK = 200


class SVDRecommender(BaseRecommender):
    """PureSVD recommender (Cremonesi, Koren and Turrin 2010).

    The users x items matrix ``X`` (missing entries as zeros) is factorised
    by a rank-``k`` truncated SVD ``X ~= U_k S_k V_k^T``; the item factors
    are ``V_k`` and a user with interaction row ``x`` (any user, seen in
    ``fit`` or not) is folded in as

        w = x V_k,      score(x) = x V_k V_k^T.

    With ``popularity_scaling = beta > 0`` the columns are first scaled by
    ``(1 + n_j)^-beta`` (``n_j``: the item's number of interactions), as in
    EigenRec (Nikolakopoulos et al. 2017) and the PoliMi course's
    ScaledPureSVD, which lifts less popular items; the same scaling is applied
    to folded-in rows. It is off by default and can be tuned by grid search.

    ``X`` may also be a row-chunked :class:`dask.array.Array` (dense or
    scipy-sparse chunks): the randomized SVD then runs block by block where
    the blocks live (:func:`sksvd._dask.dask_randomized_svd`), each block's
    products in torch on the worker's device.

    With ``shrinkage = lambda > 0`` the singular values are shrunk as in
    low-rank ridge regression: the item-item weights become

        W = V_k diag(s_i^2 / (s_i^2 + lambda)) V_k^T,   score(x) = x W,

    the closed-form minimiser of ``||X - X W||_F^2 + lambda ||W||_F^2`` over
    the matrices ``W`` of rank at most ``k`` (Jin, Li, Huang and Shen,
    "Towards a better understanding of linear models for recommendation",
    KDD 2021), exact for every ``k``: the ridge penalty of EASE (Steck 2019)
    with a rank constraint instead of a zero diagonal. Directions with a
    small singular value, which mostly fit noise, count less; ``lambda = 0``
    is plain PureSVD. Folded-in users are ``w = x V_k diag(s^2 / (s^2 +
    lambda))``, so ``transform``, ``predict``, ``recommend`` and the fitted
    ``user_factors_`` all follow the same formula.

    Defaults: ``n_components="auto"`` (200) and ``shrinkage=1e4`` were
    chosen on validation splits (20% of each user's training ratings held
    out, those rated >= 4 relevant, NDCG@10) of MovieLens 100K ``u1.base``
    and of an 80% part of MovieLens latest-small, with the ratings as stored
    (1-5); ``lambda`` is in the units of ``s^2``, so data of another size or
    scale want it tuned (``benchmarks/bench_topn.py`` holds the grid).

    Tuning: a grid of 12 points that ``GridSearchCV`` with
    :func:`sksvd.model_selection.make_topk_scorer` searches on the training
    matrix alone, ``{"n_components": [200, 400], "shrinkage": [3e3, 1e4],
    "popularity_scaling": [0.0, 0.1, 0.2]}``; ``benchmarks/bench_topn.py``
    runs it beside EASE on MovieLens.

    New users need no refit: ``transform``, ``predict`` and ``recommend``
    fold any row in as ``x V_k`` with the fitted ``V_k``, exactly as the
    fitted users. There is no ``partial_fit``: new interactions or items
    change the singular vectors of ``X`` themselves, which are not a sum over
    interactions that one pass could update (there is no loss to step on),
    and an incremental SVD update would drift from the exact truncated SVD
    this estimator promises; refitting costs one truncated SVD. FunkSVD and
    AsySVD, trained by gradient steps, have ``partial_fit``.

    Parameters
    ----------
    n_components : int or "auto", default="auto"
        Rank ``k``, in [1, min(n_users, n_items)]; "auto" is
        ``min(200, n_users, n_items)``.
    shrinkage : float, default=1e4
        ``lambda`` of the spectral shrinkage above, >= 0, in the units of
        ``s_i^2`` (squared values of ``X``, summed over users: it grows with
        the number of users and the scale of the values, as EASE's ``lambda``
        does).
    popularity_scaling : float, default=0.0
        Exponent ``beta`` of the column scaling (0 = plain PureSVD).
    algorithm : {"auto", "gram", "randomized", "full"}, default="auto"
        "gram" is exact, through the float64 eigendecomposition of the
        (short side)^2 Gram matrix (:func:`sksvd.linalg.gram_svd`; ``X``
        stays sparse); "randomized" is the randomized block Krylov method
        (Musco and Musco 2015, :func:`sksvd.linalg.randomized_svd`); "full"
        is the exact dense SVD
        (densifies ``X``: small data only). "auto" is "gram" when
        ``min(n_users, n_items) <= 4096``, else "randomized".
    n_oversamples : int, default=20
    n_iter : int or "auto", default="auto"
        Krylov steps; "auto" stops when the gains in captured energy still
        to come are estimated below ``tol`` times the rank-k error (see
        :func:`sksvd.linalg.randomized_svd`).
    tol : float, default=1.5e-3
        Stopping tolerance of ``n_iter="auto"``. Recommender spectra are
        flat, hence tighter than the compressor's 2e-2: on the 200,000 x
        50,000 power-law benchmark matrix (20M nonzeros) at k = 100, 1e-3
        captured 99.90% of the energy ``||X V_k||_F^2`` of scipy's ``svds``
        (16 passes of 40 columns), 1.5e-3 and 2e-3 99.67% (14 passes) and
        3e-3 99.08% (12 passes).
    device : str, default="auto"
        "auto" (``SKSVD_DEVICE``, else cuda if available, else cpu), "cpu",
        "cuda" or "cuda:N".
    dtype : str, default="float32"
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
        Unused (the fit is a single SVD); kept for a uniform interface.

    Attributes
    ----------
    item_factors_ : ndarray of shape (n_items, n_components)
        ``V_k`` (right singular vectors), orthonormal columns.
    user_factors_ : ndarray of shape (n_users, n_components)
        ``U_k S_k diag(component_weights_) = X V_k diag(component_weights_)``:
        the fitted users' vectors.
    singular_values_ : ndarray of shape (n_components,)
    component_weights_ : ndarray of shape (n_components,)
        ``s_i^2 / (s_i^2 + lambda)`` (all ones when ``shrinkage=0``).
    algorithm_ : str
        The solver used ("gram", "randomized" or "full").
    item_scale_ : ndarray of shape (n_items,)
        The column scaling (all ones when ``popularity_scaling=0``).
    n_users_, n_items_, n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd import SVDRecommender
    >>> X = np.array([[5, 4, 0, 1], [4, 5, 1, 0], [0, 1, 5, 4], [1, 0, 4, 5]])
    >>> rec = SVDRecommender(n_components=2, random_state=0, device="cpu").fit(X)
    >>> ids, scores = rec.recommend(np.array([[5, 0, 0, 0]]), k=1)
    >>> int(ids[0, 0])  # a new user who likes item 0 is offered item 1
    1
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left"),
                         StrOptions({"auto"})],
        "shrinkage": [Interval(numbers.Real, 0, None, closed="left")],
        "popularity_scaling": [Interval(numbers.Real, 0, None, closed="left")],
        "algorithm": [StrOptions({"auto", "gram", "randomized", "full"})],
        "n_oversamples": [Interval(numbers.Integral, 0, None, closed="left")],
        "n_iter": [Interval(numbers.Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "device": [str, torch.device],
        "dtype": [str, type, np.dtype, torch.dtype],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, n_components="auto", *, shrinkage=1e4, popularity_scaling=0.0,
                 algorithm="auto",
                 n_oversamples=20, n_iter="auto", tol=1.5e-3, device="auto", dtype="float32",
                 random_state=None, verbose=0):
        self.n_components = n_components
        self.shrinkage = shrinkage
        self.popularity_scaling = popularity_scaling
        self.algorithm = algorithm
        self.n_oversamples = n_oversamples
        self.n_iter = n_iter
        self.tol = tol
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def _rank(self, n_users, n_items):
        if self.n_components == "auto":
            return min(_AUTO_RANK, n_users, n_items)
        return self.n_components

    def _scale(self, X):
        if self.popularity_scaling == 0:
            return X
        if sp.issparse(X):
            return sp.csr_matrix(X @ sp.diags(self.item_scale_.astype(X.dtype)))
        return X * self.item_scale_.astype(X.dtype)

    def _fit(self, X):
        n_users, n_items = X.shape
        k = check_n_components(self._rank(n_users, n_items), n_samples=n_users,
                               n_features=n_items,
                               allow_float=False)
        counts = np.bincount(X.indices, minlength=n_items).astype(np.float64)
        self.item_scale_ = (1.0 + counts) ** -float(self.popularity_scaling)
        Xs = self._scale(X)
        device, dtype = self._device(), self._dtype()
        algorithm = self.algorithm
        if algorithm == "auto":
            algorithm = "gram" if min(n_users, n_items) <= _GRAM_MAX else "randomized"
        self.algorithm_ = algorithm
        if algorithm == "randomized":
            A, At = svd_operands(Xs, device, dtype, transpose=True)
        else:  # the exact solvers take torch tensors on every device
            A = to_torch(Xs, device=device, dtype=dtype)
            At = None if algorithm == "full" else to_torch(Xs.T.tocsr(), device=device,
                                                           dtype=dtype)
        if algorithm == "full":
            U, S, Vt = exact_svd(A, k)
        elif algorithm == "gram":
            U, S, Vt = gram_svd(A, k, At=At)
        else:
            U, S, Vt = randomized_svd(A, k, n_oversamples=self.n_oversamples,
                                      n_iter=self.n_iter, tol=self.tol, At=At,
                                      generator=make_generator(self.random_state))
        self._set_factors(to_numpy(U), to_numpy(S), to_numpy(Vt))

    def _set_factors(self, U, S, Vt):
        self.singular_values_ = S
        s2 = np.square(S.astype(np.float64))
        lam = float(self.shrinkage)
        weights = s2 / (s2 + lam) if lam > 0 else np.ones_like(s2)
        self.component_weights_ = weights.astype(S.dtype)
        self.item_factors_ = np.ascontiguousarray(Vt.T)
        self.user_factors_ = U * (S * self.component_weights_)

    def _fit_dask(self, X):
        """Fit on a row-chunked Dask array (dense or sparse chunks), block by block."""
        from .._dask import dask_item_counts, dask_randomized_svd

        n_users, n_items = X.shape
        k = check_n_components(self._rank(n_users, n_items), n_samples=n_users,
                               n_features=n_items,
                               allow_float=False)
        self.item_scale_ = (1.0 + dask_item_counts(X)) ** -float(self.popularity_scaling)
        if self.popularity_scaling != 0:
            X = X.map_blocks(self._scale, dtype=X.dtype)
        if self.algorithm not in ("auto", "randomized"):
            raise ValueError(f"algorithm={self.algorithm!r}: a Dask array is fitted with the "
                             "randomized solver only ('auto' or 'randomized')")
        self.algorithm_ = "randomized"
        U, S, Vt = dask_randomized_svd(X, k, n_oversamples=self.n_oversamples,
                                       n_iter=self.n_iter, tol=self.tol,
                                       random_state=self.random_state,
                                       device=self._device(), dtype=self._dtype())
        self._set_factors(U, S, Vt)

    def _fold_in(self, X, device, dtype):
        if kernel_backend(device) == "host":  # see csr_matmul_cpu
            V = self._weighted_factors().astype(numpy_dtype(dtype), copy=False)
            return csr_matmul_cpu(self._scale(X), V), None
        # copied to the device once per fit, not once per batch
        V = device_array(self, "item_factors_", device, dtype)
        if self.shrinkage != 0:
            V = V * device_array(self, "component_weights_", device, dtype)
        Xs = to_torch(self._scale(X), device=device, dtype=dtype)
        return torch.sparse.mm(Xs, V), None

    def _similarity_factors(self, kind):
        """Items: the columns of the model's rank-k approximation of ``X``,
        ``V_k diag(s w)`` (``w = component_weights_``), so that their cosine is
        that of the items' (shrunk) rating columns; users: ``user_factors_``."""
        if kind == "items":
            return self.item_factors_ * (self.singular_values_ * self.component_weights_)
        return self.user_factors_

    def _weighted_factors(self):
        """``V_k diag(component_weights_)``: the fold-in's right factor."""
        if self.shrinkage == 0:
            return self.item_factors_
        return self.item_factors_ * self.component_weights_
