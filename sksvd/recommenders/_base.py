"""What every sksvd recommender shares: validation, fold-in glue, predict, recommend, score.

A model is a scoring rule

    score(u, i) = w_u . q_i + c_u + d_i

with ``w_u`` the user's vector (``transform``), ``q_i`` the rows of
``item_factors_``, ``c_u`` a per-user offset (global mean plus user bias,
zero for PureSVD) and ``d_i`` a per-item offset (``item_bias_``, if any).
Subclasses learn the parameters in ``_fit`` and say how a row of the
interaction matrix becomes ``(w_u, c_u)`` in ``_fold_in``; everything else
(batched ``predict``, the single top-k routine, ``score``, ``predict_ratings``,
``similar_items``, ``similar_users``, ``explain``) is written once here, with
implicit's keyword names (``filter_items``, ``items``) where they exist.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from .._backend import numpy_dtype, resolve_device, resolve_dtype, to_numpy
from .._dask import is_dask_array
from .._topk import default_batch_size, topk_items
from .._validation import check_int, check_interactions, check_k

__all__ = ["BaseRecommender", "Explanation"]


class Explanation(NamedTuple):
    """What :meth:`BaseRecommender.explain` returns: a score as a sum over rated items.

    ``score == intercept + contributions.sum()`` (up to rounding).

    Attributes
    ----------
    items : ndarray of shape (n_rated,), int64
        The row's rated items (columns), largest contribution first (ties:
        lowest column first).
    contributions : ndarray of shape (n_rated,), float64
        What each of them adds to the score.
    intercept : float
        The part of the score that no rated item carries (e.g. the global
        mean and the item's own bias).
    score : float
        The model's score of the item for the row (before any clipping of
        predicted ratings to the rating range).

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd import SVDRecommender
    >>> X = np.array([[5, 4, 0, 1], [4, 5, 1, 0], [0, 1, 5, 4], [1, 0, 4, 5]])
    >>> rec = SVDRecommender(n_components=2, shrinkage=0.0, device="cpu")
    >>> explanation = rec.fit(X).explain(np.array([[5, 0, 0, 0]]), 1)
    >>> items, contributions, intercept, score = explanation
    >>> items.tolist(), round(float(contributions[0]), 3), intercept, round(score, 3)
    ([0], 2.5, 0.0, 2.5)
    """

    items: np.ndarray
    contributions: np.ndarray
    intercept: float
    score: float


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

    and may override:

    ``_fold_in_terms(self, x)``
        ``x`` is a one-row CSR matrix. Returns ``(W_terms, c_terms, W0, c0)``
        (float64 numpy): the row's fold-in as a sum over its rated items,
        ``w = W0 + sum_j W_terms[j]`` and ``c = c0 + sum_j c_terms[j]``
        (``c_terms`` may be ``None``). :meth:`explain` is built on it. The
        default folds each rated item in alone and checks that the parts add
        up to the row's fold-in (true when the fold-in is linear in the row,
        as PureSVD's ``x V_k``); models whose fold-in is not a sum over the
        rated items (FunkSVD's per-user ridge regression) have no such
        decomposition and ``explain`` raises there.
    ``_predicts_ratings(self)``
        Whether ``predict`` and ``predict_ratings`` are ratings, clipped to
        ``rating_range_``. Default: the model has a ``global_mean_`` and its
        ``loss`` (when it has one) is ``"mse"``.
    ``_similarity_factors(self, kind)``
        The vectors whose cosine ranks :meth:`similar_items` (``kind="items"``)
        and :meth:`similar_users` (``kind="users"``). Default:
        ``item_factors_`` and ``user_factors_``.
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

        Raises
        ------
        ValueError
            When run by scikit-learn's cross-validation (``cross_val_score``,
            ``GridSearchCV``, ...) with one of scikit-learn's own scorers
            (``scoring="neg_root_mean_squared_error"``, ``make_scorer(...)``):
            those compare ``predict(X)`` with a target ``y``, which a
            recommender does not have, and every score would be NaN. The
            message names :func:`sksvd.model_selection.make_topk_scorer` and
            :func:`sksvd.model_selection.make_rating_scorer`.

        Notes
        -----
        An exception during ``fit`` (a diverging learning rate, a callback
        that raises, ``KeyboardInterrupt``) leaves the estimator exactly as it
        was before the call. ``rating_range_`` (the smallest and largest
        stored value of ``X``) is kept: rating models clip predicted ratings
        to it.
        """
        from ..model_selection import _check_sklearn_scoring

        _check_sklearn_scoring(self)
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
            self.__dict__.pop("rating_range_", None)
            return self
        X = check_interactions(X, estimator=self, reset=True)
        self.n_users_, self.n_items_ = X.shape
        self._fit(X)
        if X.nnz:
            self.rating_range_ = np.array([X.data.min(), X.data.max()], dtype=np.float64)
        else:
            self.__dict__.pop("rating_range_", None)
        return self

    def _predicts_ratings(self):
        return hasattr(self, "global_mean_") and getattr(self, "loss", "mse") == "mse"

    def _rating_bounds(self):
        """``(low, high)`` to clip predicted ratings to, or None (not a rating model)."""
        rng = getattr(self, "rating_range_", None)
        if rng is None or not self._predicts_ratings():
            return None
        return float(rng[0]), float(rng[1])

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
        never builds it). Rating models (FunkSVD and AsySVD trained on
        ratings) clip their predictions to ``rating_range_``, the range of
        the ratings seen in ``fit``, as Surprise clips to the rating scale.

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
        bounds = self._rating_bounds()
        out = np.empty((X.shape[0], self.n_items_), dtype=np.float32)
        for s, e in self._batches(X.shape[0], batch_size):
            W, c = self._fold_in(X[s:e], device, dtype)
            S = W.to(dtype) @ Q.T
            if d is not None:
                S += d
            if c is not None:
                S += c.to(dtype)[:, None]
            if bounds is not None:
                S.clamp_(*bounds)
            out[s:e] = to_numpy(S, dtype=np.float32)
        return out

    def recommend(self, X, k=10, exclude_seen=True, batch_size=None, *, filter_items=None,
                  items=None, users=None):
        """Top-``k`` items for each row of ``X``, best first.

        Rows are folded in and scored in batches on the device; the
        (n_rows, n_items) score matrix is never built. With
        ``exclude_seen=True`` the items stored in a row of ``X`` are never
        recommended to it; when fewer than ``k`` items remain, the list is
        padded with id ``-1`` and score ``-inf``.

        The keywords are implicit's (``model.recommend(userid, user_items,
        N, filter_items=..., items=...)``): ``filter_items`` removes items
        from every list, ``items`` ranks only a candidate subset, and
        ``users`` scores fitted users with their learned vectors (implicit's
        ``recalculate_user=False``) instead of folding their rows in again.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_rows, n_items), or None
            The rows' interactions: folded in (without ``users``) and, with
            ``exclude_seen``, excluded. With ``users`` it may also be the
            whole fitted matrix (its rows ``users`` are taken), or None
            (nothing excluded).
        k : int, default=10
            Items per row, in [1, n_items].
        exclude_seen : bool, default=True
        batch_size : int, default=None
            Rows per batch (default: chosen for the device: on the CPU
            batches of 512 rows, each scored 4,096 items at a time and
            reduced while the tile is in the cache; on a GPU score blocks of
            up to 1 GiB, at most an eighth of the free memory). Results do
            not depend on it: items are ranked by score, and equal scores by
            lowest item id.
        filter_items : array-like of int, default=None
            Columns never recommended (to any row).
        items : array-like of int, default=None
            Rank only these columns (the others are never recommended); the
            ids returned are columns of ``X`` as always.
        users : array-like of int, default=None
            Row indices into the ``X`` given to ``fit``: score those users
            with their fitted vectors ``user_factors_`` and offsets, so that
            the ranking is that of :meth:`predict_ratings` (before the
            clipping of ratings). Models that keep no ``user_factors_`` raise.

        Returns
        -------
        ids : ndarray of shape (n_rows, k), int64
            Columns of ``X``, best first; ``-1`` pads a short list.
        scores : ndarray of shape (n_rows, k), float32
            The model's scores (not clipped to the rating range).

        Examples
        --------
        >>> import numpy as np
        >>> from sksvd import SVDRecommender
        >>> X = np.array([[5, 4, 0, 1, 0], [4, 5, 1, 0, 2], [0, 1, 5, 4, 3],
        ...               [1, 0, 4, 5, 0], [3, 0, 0, 4, 5]])
        >>> rec = SVDRecommender(n_components=2, device="cpu").fit(X)
        >>> x = np.array([[5, 0, 0, 0, 0]])
        >>> rec.recommend(x, k=3)[0]
        array([[1, 4, 3]])
        >>> rec.recommend(x, k=3, filter_items=[1])[0]  # never item 1
        array([[4, 3, 2]])
        >>> rec.recommend(x, k=2, items=[2, 3])[0]      # only items 2 and 3
        array([[3, 2]])
        >>> rec.recommend(X, k=1, users=[0, 2])[0]       # fitted users, learned vectors
        array([[4],
               [0]])
        """
        user_rows = None
        if users is not None:
            check_is_fitted(self)
            user_rows = self._check_index(np.atleast_1d(np.asarray(users)), "users",
                                          self.n_users_)
            if getattr(self, "user_factors_", None) is None:
                raise TypeError(f"users: {type(self).__name__} keeps no fitted user vectors; "
                                "pass the users' rows as X instead")
        if X is None:
            if user_rows is None:
                raise TypeError("X=None: expected the rows to recommend for (X=None only "
                                "with users=)")
            n_rows = user_rows.size
        else:
            X = self._check_rows(X)
            if user_rows is not None and X.shape[0] != user_rows.size:
                if X.shape[0] != self.n_users_:
                    raise ValueError(
                        f"X: {X.shape[0]} rows for {user_rows.size} users; pass the users' "
                        f"rows, or the whole fitted matrix ({self.n_users_} rows)")
                X = X[user_rows]
            n_rows = X.shape[0]
        k = check_k(k, self.n_items_)
        if not isinstance(exclude_seen, (bool, np.bool_)):
            raise TypeError(f"exclude_seen={exclude_seen!r}: expected a bool")
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", min_val=1)
        # Filtered items are removed from the candidates (all items by default): the
        # scores are then computed for the candidate columns only, and mapped back.
        candidates = None
        if items is not None:
            candidates = np.unique(self._check_index(np.atleast_1d(np.asarray(items)), "items",
                                                     self.n_items_))
        if filter_items is not None:
            filtered = np.unique(self._check_index(np.atleast_1d(np.asarray(filter_items)),
                                                   "filter_items", self.n_items_))
            if filtered.size:
                candidates = np.setdiff1d(np.arange(self.n_items_) if candidates is None
                                          else candidates, filtered, assume_unique=True)
        if candidates is not None and candidates.size == 0:
            return (np.full((n_rows, k), -1, dtype=np.int64),
                    np.full((n_rows, k), -np.inf, dtype=np.float32))
        device, dtype = self._device(), self._dtype()
        Q, d = self.item_factors_, self._item_offset()
        seen = X if (exclude_seen and X is not None) else None
        if candidates is not None:
            Q = Q[candidates]
            d = None if d is None else np.asarray(d)[candidates]
            seen = None if seen is None else seen[:, candidates].tocsr()

        if user_rows is None:
            def fold(start, stop):
                return self._fold_in(X[start:stop], device, dtype)
        else:
            P = self.user_factors_
            offset = (self._fitted_user_offset() if hasattr(self, "global_mean_")
                      or hasattr(self, "user_bias_") else None)

            def fold(start, stop):
                rows = user_rows[start:stop]
                return P[rows], (None if offset is None else offset[rows])

        ids, scores = topk_items(fold, Q, k, seen=seen, n_rows=n_rows, item_offset=d,
                                 batch_size=batch_size, device=device, dtype=dtype)
        if candidates is not None:
            ids = np.where(ids >= 0, candidates[np.maximum(ids, 0)], -1)
        return ids, scores

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
            Clipped to ``rating_range_`` (the range of the ratings seen in
            ``fit``) for rating models.

        Raises
        ------
        ValueError
            For a model trained to rank (a ``loss`` other than "mse"): its
            scores order items but are not ratings.
        """
        check_is_fitted(self)
        loss = getattr(self, "loss", "mse")
        if loss != "mse":
            raise ValueError(
                f"loss={loss!r}: {type(self).__name__} was trained to rank items, and its "
                "scores are not ratings; fit it with loss='mse' to predict ratings (predict "
                "and recommend give the ranking scores)"
            )
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
        bounds = self._rating_bounds()
        if bounds is not None:
            np.clip(r, *bounds, out=r)
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

    # --------------------------------------------------------- neighbours
    def _similarity_factors(self, kind):
        return self.item_factors_ if kind == "items" else getattr(self, "user_factors_", None)

    def _similar(self, kind, which, k, batch_size):
        check_is_fitted(self)
        n = self.n_items_ if kind == "items" else self.n_users_
        which = self._check_index(np.atleast_1d(np.asarray(which)), kind, n)
        k = check_k(k, n)
        F = self._similarity_factors(kind)
        if F is None:
            raise TypeError(f"similar_{kind}: {type(self).__name__} keeps no fitted "
                            f"{kind[:-1]} vectors")
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", min_val=1)
        device, dtype = self._device(), self._dtype()
        F = torch.as_tensor(np.asarray(F), dtype=dtype).to(device)
        # Cosine: unit rows; a zero row (never rated) stays zero, similar to nothing.
        norms = torch.linalg.vector_norm(F, dim=1, keepdim=True)
        F = F / torch.where(norms > 0, norms, torch.ones_like(norms))
        query = F.index_select(0, torch.from_numpy(which).to(device))
        # The query itself is excluded as a seen item.
        itself = sp.csr_matrix((np.ones(which.size, dtype=np.float32), which,
                                np.arange(which.size + 1)), shape=(which.size, n))
        return topk_items(query, F, k, seen=itself, batch_size=batch_size, device=device,
                          dtype=dtype)

    def similar_items(self, items, k=10, batch_size=None):
        """The ``k`` items most similar to each of ``items``, the item itself excluded.

        Similarity is the cosine of the items' factor vectors
        (``item_factors_``, or the vectors a model names in its
        ``_similarity_factors`` hook), computed in batches on the device by the
        same top-k routine as :meth:`recommend` (ties by lowest id). Items
        never rated in ``fit`` have zero vectors: similarity 0 to every item.
        As implicit's ``similar_items(itemid, N)``, with the item left out.

        Parameters
        ----------
        items : int or array-like of int
            Columns of the ``X`` given to ``fit``.
        k : int, default=10
        batch_size : int, default=None
            Items per batch (see :meth:`recommend`).

        Returns
        -------
        ids : ndarray of shape (n_queries, k), int64
            Items most similar to each queried item, best first.
        scores : ndarray of shape (n_queries, k), float32
            Cosine similarities, in [-1, 1].

        Examples
        --------
        >>> from sksvd import SVDRecommender
        >>> rec = SVDRecommender(n_components=2, device="cpu")
        >>> _ = rec.fit([[5, 4, 0, 1, 0], [4, 5, 1, 0, 2], [0, 1, 5, 4, 3],
        ...              [1, 0, 4, 5, 0], [3, 0, 0, 4, 5]])
        >>> ids, scores = rec.similar_items([0, 2], k=1)
        >>> ids
        array([[1],
               [3]])
        """
        return self._similar("items", items, k, batch_size)

    def similar_users(self, users, k=10, batch_size=None):
        """The ``k`` fitted users most similar to each of ``users``, the user excluded.

        Cosine of the users' vectors ``user_factors_`` (see
        :meth:`similar_items`). As implicit's ``similar_users(userid, N)``.

        Parameters
        ----------
        users : int or array-like of int
            Rows of the ``X`` given to ``fit``.
        k : int, default=10
            Users listed for each query user.
        batch_size : int, default=None

        Returns
        -------
        ids : ndarray of shape (n_queries, k), int64
            Users most similar to each queried user, best first.
        scores : ndarray of shape (n_queries, k), float32
            Cosine similarities of the users' vectors.

        Examples
        --------
        >>> import numpy as np
        >>> from sksvd import SVDRecommender
        >>> rows = [[5, 4, 0, 1, 0], [4, 5, 1, 0, 2], [0, 1, 5, 4, 3],
        ...         [1, 0, 4, 5, 0], [3, 0, 0, 4, 5]]
        >>> rec = SVDRecommender(n_components=2, device="cpu").fit(np.array(rows))
        >>> rec.similar_users(0, k=1)[0]
        array([[1]])
        """
        return self._similar("users", users, k, batch_size)

    # ------------------------------------------------------------ explain
    def _fold_in_terms(self, x):
        """Default: each rated item folded in alone, checked to add up to the row's fold-in."""
        device, dtype = self._device(), torch.float64
        n, m = x.nnz, self.n_items_
        x = x.astype(np.float64)
        singles = sp.csr_matrix((x.data, x.indices, np.arange(n + 1)), shape=(n, m))
        parts = [self._fold_in(A, device, dtype)
                 for A in (singles, sp.csr_matrix((1, m), dtype=np.float64), x)]
        (W1, c1), (W0, c0), (W, c) = [
            (to_numpy(w, dtype=np.float64).reshape(-1, self.item_factors_.shape[1]),
             None if o is None else to_numpy(o, dtype=np.float64).reshape(-1))
            for w, o in parts]
        W1 = W1 - W0
        c1 = None if c1 is None else c1 - c0
        ok = np.allclose(W1.sum(0) + W0[0], W[0], rtol=1e-6,
                         atol=1e-9 * (1.0 + np.abs(W1).sum()))
        if c is not None:
            ok &= np.allclose(c1.sum() + c0[0], c[0], rtol=1e-6,
                              atol=1e-9 * (1.0 + np.abs(c1).sum()))
        if not ok:
            raise TypeError(
                f"explain: {type(self).__name__}'s fold-in is not a sum over the rated items "
                "(its user vector solves a per-user regression), so its scores have no exact "
                "per-item decomposition; explain is defined for the item-item models "
                "(SVDRecommender, AsySVD)")
        return W1, c1, W0[0], (0.0 if c0 is None else float(c0[0]))

    def explain(self, x_row, item):
        """The exact contribution of each rated item of ``x_row`` to its score of ``item``.

        For the item-item models the score is a sum over the row's rated
        items plus an intercept: PureSVD's ``score_i = sum_j x_j (V_k f
        V_k^T)_{j,i}`` (``x`` column-scaled, ``f`` the spectrum shrinkage,
        see :class:`~sksvd.SVDRecommender`), AsySVD's ``mu + b_i + b_u + q_i .
        p_u`` with ``p_u`` a normalised sum over the rated items and ``b_u``
        a closed-form sum of their residuals (see :class:`~sksvd.AsySVD`);
        each rated item's share of those sums is its contribution, computed
        in float64. As implicit's ``explain(userid, user_items, itemid)``.
        Models whose user vector is a per-user regression (FunkSVD) raise
        TypeError.

        Parameters
        ----------
        x_row : {array-like, sparse matrix} of shape (1, n_items)
            One user's interactions (a fitted user's row of ``X``, or a new
            user).
        item : int
            The column whose score is explained.

        Returns
        -------
        Explanation
            ``(items, contributions, intercept, score)``, largest contribution
            first; ``intercept + contributions.sum() == score``.

        Examples
        --------
        >>> import scipy.sparse as sp
        >>> import numpy as np
        >>> from sksvd import SVDRecommender
        >>> X = sp.csr_matrix([[5, 4, 0, 1, 0], [4, 5, 1, 0, 2], [0, 1, 5, 4, 3],
        ...                    [1, 0, 4, 5, 0], [3, 0, 0, 4, 5]])
        >>> rec = SVDRecommender(n_components=2, device="cpu").fit(X)
        >>> e = rec.explain(np.array([[5, 0, 0, 2, 0]]), item=1)
        >>> e.items                     # item 0 carries the score of item 1
        array([0, 3])
        >>> bool(np.isclose(e.intercept + e.contributions.sum(), e.score))
        True
        """
        x = self._check_rows(x_row, name="x_row")
        if x.shape[0] != 1:
            raise ValueError(f"x_row: expected one row, got {x.shape[0]}")
        if np.ndim(item) != 0:
            raise ValueError(f"item={item!r}: expected one column index (an int)")
        item = int(self._check_index(np.atleast_1d(np.asarray(item)), "item",
                                     self.n_items_)[0])
        W_terms, c_terms, W0, c0 = self._fold_in_terms(x)
        q = np.asarray(self.item_factors_[item], dtype=np.float64)
        contributions = W_terms @ q
        if c_terms is not None:
            contributions = contributions + c_terms
        d = self._item_offset()
        intercept = float(W0 @ q + c0 + (0.0 if d is None else float(d[item])))
        order = np.lexsort((x.indices, -contributions))
        return Explanation(items=x.indices[order].astype(np.int64),
                           contributions=contributions[order],
                           intercept=intercept,
                           score=intercept + float(contributions.sum()))

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
            "(n_rows, n_items) score matrix. Sparse input itself is supported and "
            "tested in tests/test_puresvd.py and the other recommender tests."
        ),
        "check_estimator_sparse_matrix": (
            "asserts predict(X).shape == (n_samples,); a recommender's predict returns the "
            "(n_rows, n_items) score matrix. Sparse input itself is supported."
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
