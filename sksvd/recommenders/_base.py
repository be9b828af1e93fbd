"""What every sksvd recommender shares: validation, fold-in glue, predict, recommend, score.

A model is a scoring rule

    score(u, i) = w_u . q_i + c_u + d_i

with ``w_u`` the user's vector (``transform``), ``q_i`` the rows of
``item_factors_``, ``c_u`` a per-user offset (global mean plus user bias,
zero for PureSVD) and ``d_i`` a per-item offset (``item_bias_``, if any).
Subclasses learn the parameters in ``_fit`` and say how a row of the
interaction matrix becomes ``(w_u, c_u)`` in ``_fold_in``; everything else
(batched ``predict``, the single top-k routine, ``score``, ``predict_ratings``)
is written once here.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from .._backend import numpy_dtype, resolve_device, resolve_dtype, to_numpy
from .._dask import is_dask_array
from .._topk import default_batch_size, topk_items
from .._validation import check_int, check_interactions, check_k

__all__ = ["BaseRecommender"]


class BaseRecommender(TransformerMixin, BaseEstimator):
    """Base class for recommenders fitted on a users x items matrix.

    Rows of ``X`` are users (samples), columns are items (features). Any
    scipy sparse format is accepted and converted to CSR float32 without
    densifying; dense arrays are accepted too; duplicate (user, item) entries
    are summed; stored zeros are dropped (a zero is "no interaction").

    Subclasses implement:

    ``_fit(self, X)``
        ``X`` is a validated CSR matrix. Sets ``item_factors_`` (n_items, d),
        ``user_factors_`` (n_users, d: the vectors of the fitted users) and
        optionally ``global_mean_``, ``user_bias_``, ``item_bias_``.
    ``_fold_in(self, X, device, dtype)``
        ``X`` is a CSR batch of rows. Returns ``(W, c)``: the rows' vectors
        as a tensor (n_rows, d) on ``device`` and their offsets (n_rows,) or
        ``None``.
    """

    def _device(self):
        return resolve_device(getattr(self, "device", "auto"))

    def _dtype(self):
        return resolve_dtype(getattr(self, "dtype", "float32"))

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the model to a users x items interaction matrix.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Ratings or implicit interactions; zeros mean "no interaction".
            :class:`SVDRecommender` also takes a row-chunked Dask array.
        y : None
            Ignored; present for scikit-learn compatibility.

        Returns
        -------
        self : object

        Notes
        -----
        An exception during ``fit`` (a diverging learning rate, a callback
        that raises, ``KeyboardInterrupt``) leaves the estimator exactly as it
        was before the call.
        """
        with self._restored_on_error():
            return self._fit_validated(X)

    @contextlib.contextmanager
    def _restored_on_error(self):
        """Interrupt safety for ``fit`` and ``partial_fit``: on any exception
        (``KeyboardInterrupt`` included) the estimator is left exactly as it was."""
        saved = dict(self.__dict__)
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _fit_validated(self, X):
        if is_dask_array(X):
            # Past one machine: the SVD family computes with the blocks where they live.
            if not hasattr(self, "_fit_dask"):
                raise TypeError(f"X: {type(self).__name__} does not accept a Dask array; "
                                "pass a scipy sparse matrix")
            if X.ndim != 2:
                raise ValueError(f"X: expected a 2-D Dask array, got {X.ndim} dimension(s)")
            self.n_users_, self.n_items_ = X.shape
            self.n_features_in_ = X.shape[1]
            self._fit_dask(X)
            return self
        X = check_interactions(X, estimator=self, reset=True)
        self.n_users_, self.n_items_ = X.shape
        self._fit(X)
        return self

    def _fit(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    def _fold_in(self, X, device, dtype):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_rows(self, X, name="X"):
        check_is_fitted(self)
        return check_interactions(X, name=name, estimator=self, reset=False)

    def _item_offset(self):
        return getattr(self, "item_bias_", None)

    def _fitted_user_offset(self):
        off = np.zeros(self.n_users_, dtype=np.float64)
        if hasattr(self, "global_mean_"):
            off += self.global_mean_
        if hasattr(self, "user_bias_"):
            off += self.user_bias_
        return off

    def _batches(self, n_rows, batch_size):
        # transform and predict: 64 MiB of float32 per (rows, n_items) batch (recommend's
        # score blocks are smaller, see sksvd._topk.default_batch_size).
        if batch_size is None:
            batch_size = default_batch_size(self.n_items_, block_elements=2**24)
        batch_size = check_int(batch_size, "batch_size", min_val=1)
        return [(s, min(s + batch_size, n_rows)) for s in range(0, n_rows, batch_size)]

    # ------------------------------------------------------------ fold-in
    def transform(self, X):
        """User vectors of the rows of ``X``, folded in (new users too).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_rows, n_items)

        Returns
        -------
        W : ndarray of shape (n_rows, n_components)
        """
        X = self._check_rows(X)
        device, dtype = self._device(), self._dtype()
        out = [to_numpy(self._fold_in(X[s:e], device, dtype)[0])
               for s, e in self._batches(X.shape[0], None)]
        if not out:
            return np.zeros((0, self.item_factors_.shape[1]), dtype=np.float32)
        return np.concatenate(out, axis=0)

    def predict(self, X, batch_size=None):
        """Predicted scores (or ratings) of every item for the rows of ``X``.

        Computed in batches on the device; the returned array is dense, of
        shape (n_rows, n_items), so pass the rows you need (``recommend``
        never builds it).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_rows, n_items)
        batch_size : int, default=None
            Rows per batch (default: 64 MiB score blocks).

        Returns
        -------
        scores : ndarray of shape (n_rows, n_items), float32
        """
        X = self._check_rows(X)
        device, dtype = self._device(), self._dtype()
        Q = torch.as_tensor(self.item_factors_, dtype=dtype).to(device)
        d = self._item_offset()
        d = None if d is None else torch.as_tensor(d, dtype=dtype).to(device)
        out = np.empty((X.shape[0], self.n_items_), dtype=np.float32)
        for s, e in self._batches(X.shape[0], batch_size):
            W, c = self._fold_in(X[s:e], device, dtype)
            S = W.to(dtype) @ Q.T
            if d is not None:
                S += d
            if c is not None:
                S += c.to(dtype)[:, None]
            out[s:e] = to_numpy(S, dtype=np.float32)
        return out

    def recommend(self, X, k=10, exclude_seen=True, batch_size=None):
        """Top-``k`` items for each row of ``X``, best first.

        Rows are folded in and scored in batches on the device; the
        (n_rows, n_items) score matrix is never built. With
        ``exclude_seen=True`` the items stored in a row of ``X`` are never
        recommended to it; when fewer than ``k`` items remain, the list is
        padded with id ``-1`` and score ``-inf``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_rows, n_items)
        k : int, default=10
            Items per row, in [1, n_items].
        exclude_seen : bool, default=True
        batch_size : int, default=None
            Rows per batch (default: score blocks of about 128 MiB, see
            :func:`sksvd._topk.default_batch_size`). Results do not depend
            on it: items are ranked by score, and equal scores by lowest
            item id.

        Returns
        -------
        ids : ndarray of shape (n_rows, k), int64
        scores : ndarray of shape (n_rows, k), float32
        """
        X = self._check_rows(X)
        k = check_k(k, self.n_items_)
        if not isinstance(exclude_seen, (bool, np.bool_)):
            raise TypeError(f"exclude_seen={exclude_seen!r}: expected a bool")
        device, dtype = self._device(), self._dtype()

        def fold(start, stop):
            return self._fold_in(X[start:stop], device, dtype)

        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", min_val=1)
        return topk_items(fold, self.item_factors_, k, seen=X if exclude_seen else None,
                          n_rows=X.shape[0], item_offset=self._item_offset(),
                          batch_size=batch_size, device=device, dtype=dtype)

    def predict_ratings(self, users, items):
        """Predicted ratings for (user, item) pairs of the fitted users.

        Parameters
        ----------
        users : array-like of int, shape (n_pairs,)
            Row indices into the ``X`` given to ``fit``.
        items : array-like of int, shape (n_pairs,)
            Column indices.

        Returns
        -------
        ratings : ndarray of shape (n_pairs,), float32
        """
        check_is_fitted(self)
        users = self._check_index(users, "users", self.n_users_)
        items = self._check_index(items, "items", self.n_items_)
        if users.shape != items.shape:
            raise ValueError(
                f"users and items: expected the same length, got {users.shape[0]} and "
                f"{items.shape[0]}"
            )
        P = np.asarray(self.user_factors_, dtype=np.float64)
        Q = np.asarray(self.item_factors_, dtype=np.float64)
        r = np.einsum("ij,ij->i", P[users], Q[items]) + self._fitted_user_offset()[users]
        d = self._item_offset()
        if d is not None:
            r += np.asarray(d, dtype=np.float64)[items]
        return r.astype(np.float32)

    @staticmethod
    def _check_index(values, name, n):
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array of ints, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name}: expected ints, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            bad = arr[(arr < 0) | (arr >= n)][0]
            raise ValueError(f"{name}: index {bad} out of range [0, {n})")
        return arr

    def score(self, X, y=None):
        """NDCG@10 on ``X`` by the fold-in protocol (20% of each row hidden, seed 0).

        See :func:`sksvd.model_selection.make_topk_scorer`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_rows, n_items)
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        from ..model_selection import make_topk_scorer

        X = self._check_rows(X)
        return make_topk_scorer("ndcg", k=10, holdout=0.2, random_state=0)(self, X)

    # scikit-learn checks that cannot apply to a recommender, each with its reason; the
    # test suite passes this to ``parametrize_with_checks(expected_failed_checks=...)``.
    _xfail_checks = {
        "check_estimator_sparse_array": (
            "asserts predict(X).shape == (n_samples,); a recommender's predict returns the "
            "(n_rows, n_items) score matrix (API.md). Sparse input itself is supported and "
            "tested in tests/test_puresvd.py and the other recommender tests."
        ),
        "check_estimator_sparse_matrix": (
            "asserts predict(X).shape == (n_samples,); a recommender's predict returns the "
            "(n_rows, n_items) score matrix (API.md). Sparse input itself is supported."
        ),
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.required = False
        # Computation (and output) precision is the ``dtype`` parameter, not the input's.
        try:
            out = numpy_dtype(self._dtype()).name
        except ValueError:
            out = "float32"
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = [out]
        return tags
