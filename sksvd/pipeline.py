"""Top-k lists from a Pipeline or a grid search whose last step is a recommender.

``GridSearchCV(Pipeline([("bin", Binarizer()), ("rec", SVDRecommender())]), ...)``
tunes a recommender with its preprocessing, but neither the search nor the
Pipeline has a ``recommend`` method, and ``pipe[-1].recommend(X)`` would skip
the transformers. :func:`recommend` takes either (or a bare recommender) and
raw rows, applies the fitted transformers, then the recommender's
``recommend``. The transformers must keep the items as columns (the ids
returned are columns of the transformed rows, the same as the raw ones for
element-wise transformers such as ``Binarizer`` or ``FunctionTransformer``).
"""

from __future__ import annotations

from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

__all__ = ["recommend", "final_recommender"]


def final_recommender(estimator):
    """Split a fitted recommender, Pipeline or search into (transform, recommender).

    Parameters
    ----------
    estimator : recommender, Pipeline or fitted search
        A search (``GridSearchCV``, ``RandomizedSearchCV``, any object with
        ``best_estimator_``) is replaced by its ``best_estimator_``; a
        Pipeline's steps before the last become the transform.

    Returns
    -------
    transform : callable ``X -> X``
        The fitted transformers in order (the identity when there are none).
    recommender : the last step, a fitted object with ``recommend``

    Raises
    ------
    TypeError
        The last step has no ``recommend`` method; a search fitted with
        ``refit=False`` (no ``best_estimator_``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import Binarizer
    >>> from sksvd import SVDRecommender
    >>> from sksvd.pipeline import final_recommender
    >>> X = np.array([[5, 4, 0, 1], [4, 5, 1, 0], [0, 1, 5, 4], [1, 0, 4, 5]])
    >>> pipe = make_pipeline(Binarizer(threshold=3), SVDRecommender(2, device="cpu")).fit(X)
    >>> transform, rec = final_recommender(pipe)
    >>> transform(X[:1]), type(rec).__name__
    (array([[1, 1, 0, 0]]), 'SVDRecommender')
    """
    est = estimator
    if hasattr(est, "cv_results_") or hasattr(est, "param_grid") \
            or hasattr(est, "param_distributions"):
        if not hasattr(est, "best_estimator_"):
            check_is_fitted(est, "cv_results_")
            raise TypeError(f"estimator={type(est).__name__}: no best_estimator_ (fitted with "
                            "refit=False); refit it, or pass the estimator to use")
        est = est.best_estimator_
    if isinstance(est, Pipeline):
        steps = est[:-1] if len(est.steps) > 1 else None
        last = est[-1]
        if not hasattr(last, "recommend"):
            raise TypeError(f"estimator: the last step of the Pipeline is "
                            f"{type(last).__name__}, which has no recommend method; expected "
                            "a recommender")
        return (steps.transform if steps is not None else _identity), last
    if not hasattr(est, "recommend"):
        raise TypeError(f"estimator={type(est).__name__}: expected a recommender, a Pipeline "
                        "ending in one, or a fitted search over one")
    return _identity, est


def _identity(X):
    return X


def recommend(estimator, X, k=10, **kwargs):
    """Top-``k`` items for raw rows through a Pipeline or search ending in a recommender.

    ``recommend(search, X, k)`` is ``rec.recommend(T(X), k)`` with ``T``
    the fitted transformers of ``search.best_estimator_`` and ``rec`` its last
    step: the rows are preprocessed exactly as in ``fit``, and seen items are
    those stored in the transformed rows.

    Parameters
    ----------
    estimator : recommender, Pipeline or fitted search (see :func:`final_recommender`)
    X : {array-like, sparse matrix} of shape (n_rows, n_items)
        Raw rows, as given to the Pipeline's ``fit``.
    k : int, default=10
    **kwargs
        Passed to the recommender's ``recommend`` (``exclude_seen``,
        ``filter_items``, ``items``, ``batch_size``).

    Returns
    -------
    ids : ndarray of shape (n_rows, k), int64
        The final recommender's lists for the transformed rows, best first.
    scores : ndarray of shape (n_rows, k), float32
        Their scores (``-inf`` beside padding ids ``-1``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn.pipeline import Pipeline
    >>> from sklearn.preprocessing import Binarizer
    >>> from sksvd import SVDRecommender
    >>> from sksvd.model_selection import make_topk_scorer
    >>> from sksvd.pipeline import recommend
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 6, (40, 12)) * (rng.random((40, 12)) < 0.5)
    >>> pipe = Pipeline([("bin", Binarizer(threshold=2)),
    ...                  ("rec", SVDRecommender(device="cpu"))])
    >>> search = GridSearchCV(pipe, {"rec__n_components": [2, 4]},
    ...                       scoring=make_topk_scorer("ndcg", k=5), cv=2).fit(X)
    >>> ids, scores = recommend(search, X[:3], k=5)
    >>> ids.shape
    (3, 5)
    """
    transform, rec = final_recommender(estimator)
    return rec.recommend(transform(X), k=k, **kwargs)
