"""Splitting interaction matrices, scorers for model selection, and evaluation.

The scorers implement the *strong generalisation* protocol (Marlin, 2004;
Liang et al., 2018): the users of a test fold were never seen in ``fit``.
For each test row, part of its interactions is hidden, the rest is folded in
(``recommend`` / ``predict`` on the visible part: the model computes the
user's vector from it), and the hidden items are what the model must find.
Because a split depends only on the rows and the seed, every candidate of a
grid search is scored on the same hidden items.

All splits here are vectorized over the stored entries: one random key per
entry, one sort by (row, key), and a rank within each row; there is no Python
loop per user. A share ``p`` of ``n`` entries holds out ``floor(p * n)`` of
them (a row's ``n_u`` with ``mode="per_user"``, all ``nnz`` with
``mode="global"``), so a row with fewer than ``1 / p`` entries keeps them all
in train; a count holds out exactly that many.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError, UndefinedMetricWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ._topk import default_batch_size
from ._validation import (
    DENOMINATORS,
    GAINS,
    check_choice,
    check_float,
    check_interactions,
    check_k,
    validate_args,
)
from .metrics import RANKING_METRICS, mae, rmse, topk_metrics

__all__ = [
    "make_topk_scorer",
    "make_rating_scorer",
    "train_test_split_interactions",
    "leave_k_out",
    "evaluate",
]

_RATING_METRICS = ("rmse", "mae")
# Guards floor(share * n) against 0.29 * 100 = 28.999999999999996.
_EPS = 1e-9


# --------------------------------------------------------------------------- splitting
def _parse_holdout(holdout, name="holdout", allow_top=True):
    """Return ("share", p), ("count", n) or ("top", n)."""
    top = " or 'top:N' with N an int >= 1" if allow_top else ""
    msg = f"{name}={holdout!r}: expected a float in (0, 1), an int >= 1{top}"
    if isinstance(holdout, str):
        head, sep, tail = holdout.partition(":")
        if allow_top and sep and head.strip().lower() == "top":
            try:
                n = int(tail.strip())
            except ValueError:
                raise ValueError(msg) from None
            if n >= 1:
                return "top", n
        raise ValueError(msg)
    if isinstance(holdout, bool) or not isinstance(holdout, numbers.Real):
        raise TypeError(msg + f", got {type(holdout).__name__}")
    if isinstance(holdout, numbers.Integral):
        if holdout < 1:
            raise ValueError(msg)
        return "count", int(holdout)
    if not 0.0 < float(holdout) < 1.0:
        raise ValueError(msg)
    return "share", float(holdout)


def _row_of_entry(X):
    return np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))


def _split_by_mask(X, mask, n_in_mask=None):
    """(entries not in mask, entries in mask) as two CSR matrices of X's shape.

    ``n_in_mask`` (per row), when known, saves counting the mask row by row.
    """
    counts = np.diff(X.indptr)
    if n_in_mask is None:
        n_in_mask = np.bincount(_row_of_entry(X)[mask], minlength=X.shape[0])
    idx_dtype = X.indices.dtype if X.nnz < np.iinfo(X.indices.dtype).max else np.int64

    def take(m, per_row):
        indptr = np.zeros(X.shape[0] + 1, dtype=idx_dtype)
        np.cumsum(per_row, out=indptr[1:])
        return sp.csr_matrix((X.data[m], X.indices[m].astype(idx_dtype, copy=False), indptr),
                             shape=X.shape)

    return take(~mask, counts - n_in_mask), take(mask, n_in_mask)


def _n_of_share(share, n):
    """``floor(share * n)`` (int, or int64 array for an array ``n``): the entries a share hides."""
    out = np.floor(share * np.asarray(n) + _EPS).astype(np.int64)
    return int(out) if out.ndim == 0 else out


def _hide_anywhere(X, n_hide, rng):
    """Hide ``n_hide`` random entries of ``X``, anywhere; returns (visible, hidden).

    ``rng`` is a :class:`numpy.random.RandomState`.
    """
    mask = np.zeros(X.nnz, dtype=bool)
    if n_hide:
        mask[np.argpartition(rng.random_sample(X.nnz), n_hide - 1)[:n_hide]] = True
    return _split_by_mask(X, mask)


def _hide_per_row(X, spec, rng):
    """Hide entries of each row of the canonical CSR ``X``; returns (visible, hidden).

    ``spec`` is ("share", p): ``floor(p * n_u)`` random entries of a row with
    ``n_u`` entries; ("count", n): ``n`` random entries of rows with more than
    ``n``; ("top", n): the ``n`` highest values of rows with more than ``n``
    entries, ties broken at random. Other rows hide nothing.
    """
    kind, value = spec
    counts = np.diff(X.indptr).astype(np.int64)
    if kind == "share":
        n_hide = _n_of_share(value, counts)
    else:
        n_hide = np.where(counts > value, value, 0)
    rows = _row_of_entry(X)
    order = _order_within_rows(X, rows, rng.random_sample(X.nnz), by_value=kind == "top")
    rank = np.empty(X.nnz, dtype=np.int64)
    rank[order] = np.arange(X.nnz, dtype=np.int64) - X.indptr[rows]  # rows[order] == rows
    return _split_by_mask(X, rank < n_hide[rows], np.minimum(n_hide, counts))


def _order_within_rows(X, rows, noise, by_value):
    """Argsort of the entries by (row, [value descending,] noise): a random order per row.

    One float64 argsort of ``row (* n_values + value rank) + noise / 2``
    instead of a (much slower) :func:`numpy.lexsort`; ``noise`` in [0, 1)
    breaks ties, halved so that rounding never carries it into the next
    integer (the next row or value).
    """
    noise = 0.5 * noise
    if not by_value:
        return np.argsort(rows + noise)
    values, inverse = np.unique(X.data, return_inverse=True)
    n_values = values.size
    if X.shape[0] * n_values < 2**40:  # integer part exact, noise resolution 2**-12
        desc = (n_values - 1 - inverse.ravel()).astype(np.float64)
        return np.argsort(rows * float(n_values) + desc + noise)
    return np.lexsort((noise, -X.data, rows))


def _relevant(hidden, relevance_threshold):
    if relevance_threshold is None:
        return hidden
    keep = hidden.data >= relevance_threshold
    return _split_by_mask(hidden, keep)[1]


def _check_threshold(relevance_threshold):
    if relevance_threshold is None:
        return None
    return check_float(relevance_threshold, "relevance_threshold")


def train_test_split_interactions(X, test_size=0.2, random_state=0, mode="per_user"):
    """Split the entries of a users x items matrix into train and test, keeping the shape.

    ``mode="per_user"``: each row keeps its own share in test:
    ``floor(test_size * n_u)`` of its ``n_u`` entries, chosen at random (a
    float ``test_size``; rows with fewer than ``1 / test_size`` entries stay
    whole in train), or exactly ``test_size`` entries of every row holding
    more than that (an int ``test_size``, as :func:`leave_k_out`).
    ``mode="global"``: ``floor(test_size * nnz)`` (float) or ``test_size``
    (int) entries drawn at random among all the stored entries, whatever
    their row (the 80/20 split of the PoliMi recommender-systems course).

    Both matrices have the shape of ``X``, disjoint entries, and
    ``X_train + X_test == X``; stored zeros of ``X`` are dropped (a zero is no
    interaction) and duplicate entries summed. ``X`` is not modified.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
    test_size : float in (0, 1) or int >= 1, default=0.2
    random_state : int, RandomState instance or None, default=0
    mode : {"per_user", "global"}, default="per_user"

    Returns
    -------
    X_train, X_test : scipy.sparse.csr_matrix of shape (n_users, n_items)
        Same dtype as ``X`` (float32 or float64; other numbers become float64).

    Raises
    ------
    ValueError
        For a bad ``test_size`` or ``mode``, or a split that leaves the test
        (or, globally, the train) set empty.

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd.model_selection import train_test_split_interactions
    >>> X = np.ones((3, 10))
    >>> X_train, X_test = train_test_split_interactions(X, test_size=0.2, random_state=0)
    >>> X_train.shape, X_test.shape
    ((3, 10), (3, 10))
    >>> X_test.getnnz(axis=1)       # floor(0.2 * 10) per row
    array([2, 2, 2], dtype=int32)
    >>> X_train, X_test = train_test_split_interactions(X, 0.2, mode="global")
    >>> X_test.nnz                  # floor(0.2 * 30), anywhere
    6
    """
    if mode not in ("per_user", "global"):
        raise ValueError(f"mode={mode!r}: expected 'per_user' or 'global'")
    spec = _parse_holdout(test_size, name="test_size", allow_top=False)
    X = check_interactions(X, dtype=None, canonical=True, ensure_min_samples=0)
    rng = check_random_state(random_state)
    if mode == "per_user":
        X_train, X_test = _hide_per_row(X, spec, rng)
    else:
        kind, value = spec
        n_test = _n_of_share(value, X.nnz) if kind == "share" else value
        if n_test >= X.nnz:
            raise ValueError(
                f"test_size={test_size!r}: leaves the train set empty (X has {X.nnz} entries)"
            )
        X_train, X_test = _hide_anywhere(X, n_test, rng)
    if X_test.nnz == 0:
        raise ValueError(
            f"test_size={test_size!r}: leaves the test set empty with mode={mode!r} "
            f"(X has {X.nnz} entries; rows have at most "
            f"{int(np.diff(X.indptr).max(initial=0))})"
        )
    return X_train, X_test


@validate_args({"k": [Interval(numbers.Integral, 1, None, closed="left")]})
def leave_k_out(X, k=1, random_state=0):
    """Move ``k`` random entries of each row to a test matrix (leave-k-out).

    Rows with at most ``k`` entries stay whole in train (they would have
    nothing left to fold in). Same as
    ``train_test_split_interactions(X, test_size=k, mode="per_user")``.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
    k : int >= 1, default=1
    random_state : int, RandomState instance or None, default=0

    Returns
    -------
    X_train, X_test : scipy.sparse.csr_matrix of shape (n_users, n_items)

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd.model_selection import leave_k_out
    >>> X = np.array([[1, 2, 3], [4, 0, 0]])
    >>> X_train, X_test = leave_k_out(X, k=1, random_state=0)
    >>> X_test.getnnz(axis=1), X_train.getnnz(axis=1)      # row 1 has nothing to spare
    (array([1, 0], dtype=int32), array([2, 1], dtype=int32))
    """
    return train_test_split_interactions(X, test_size=int(k), random_state=random_state,
                                         mode="per_user")


# --------------------------------------------------------------------------- sklearn scorers
def _sklearn_scorers(scorer):
    """The scikit-learn ``_BaseScorer`` objects inside ``scorer`` (one, or a multi-metric)."""
    from sklearn.metrics._scorer import _BaseScorer, _MultimetricScorer

    if isinstance(scorer, _MultimetricScorer):
        return [s for v in scorer._scorers.values() for s in _sklearn_scorers(v)]
    if isinstance(scorer, dict):
        return [s for v in scorer.values() for s in _sklearn_scorers(v)]
    return [scorer] if isinstance(scorer, _BaseScorer) else []


def _check_sklearn_scoring(estimator, max_depth=40):
    """Raise when ``estimator`` is being fitted by scikit-learn's cross-validation with a
    scikit-learn scorer, which cannot score a recommender.

    scikit-learn's scorers (``scoring="neg_root_mean_squared_error"``, any
    ``make_scorer``) call ``scorer(estimator, X_test, y_test)`` and compare
    ``predict(X_test)`` with ``y_test``; a recommender has no ``y`` (its rows
    are users), so every such score fails, and ``cross_val_score`` would
    return NaN with a warning per fold. The only moment sksvd's code runs
    with the scorer in reach is the ``fit`` that scikit-learn's
    ``_fit_and_score`` makes, so ``fit`` looks for that frame on the call
    stack and fails with a message naming the sksvd scorers (scikit-learn
    then reports the failed fits as an error).
    """
    import sys

    frame = sys._getframe(1)
    for _ in range(max_depth):
        frame = frame.f_back
        if frame is None:
            return
        code = frame.f_code
        if code.co_name == "_fit_and_score" and \
                frame.f_globals.get("__name__", "").startswith("sklearn.model_selection"):
            bad = _sklearn_scorers(frame.f_locals.get("scorer"))
            if bad:
                raise ValueError(
                    f"scoring={bad[0]!r}: scikit-learn's scorers compare predict(X) with a "
                    f"target y, which {type(estimator).__name__} does not have (its rows are "
                    "users, predict gives a score per item); use "
                    "sksvd.model_selection.make_topk_scorer('ndcg', k=10) for top-k lists or "
                    "make_rating_scorer('rmse') for ratings (their scores are higher-is-better, "
                    "as scikit-learn's neg_ scorers)"
                )
            return


# --------------------------------------------------------------------------- model calls
def _recommend(estimator, X, k, exclude_seen=True):
    """``estimator.recommend(X, k, exclude_seen)[0]``; a Pipeline transforms X, then its last step."""
    from .pipeline import recommend

    return np.asarray(recommend(estimator, X, k=k, exclude_seen=exclude_seen)[0])


def _predict_entries(estimator, X_in, X_target, batch_size=None):
    """Predictions at the stored entries of ``X_target``, folding in the rows of ``X_in``.

    Only rows with a target entry are predicted, ``batch_size`` rows at a time
    (default: 64 MiB score blocks), so the dense (n_users, n_items) matrix is
    never built. Returns ``(y_true, y_pred)`` as 1-D arrays in CSR order.
    """
    n_items = X_target.shape[1]
    if batch_size is None:
        batch_size = default_batch_size(n_items)
    rows = np.flatnonzero(np.diff(X_target.indptr))
    y_pred = []
    for s in range(0, rows.size, batch_size):
        b = rows[s:s + batch_size]
        T = X_target[b]
        P = np.asarray(estimator.predict(X_in[b]))
        if P.shape != T.shape:
            raise ValueError(
                f"estimator.predict: expected shape {T.shape}, got {P.shape}"
            )
        y_pred.append(P[_row_of_entry(T), T.indices])
    y_true = X_target[rows].data
    y_pred = np.concatenate(y_pred) if y_pred else np.zeros(0)
    return np.asarray(y_true, dtype=np.float64), y_pred.astype(np.float64)


def _no_user(what):
    warnings.warn(f"{what}: no test row has a hidden item to evaluate; the score is NaN",
                  UndefinedMetricWarning, stacklevel=3)
    return float("nan")


# --------------------------------------------------------------------------- scorers
@dataclass(repr=False, eq=False)
class _TopKScorer:
    """Callable ``scorer(estimator, X, y=None) -> float``; built by :func:`make_topk_scorer`."""

    metric: str
    k: int
    holdout: object
    random_state: object
    relevance_threshold: float | None
    gains: str
    denominator: str

    def split(self, X):
        """The fold-in split of the rows of ``X``: ``(X_visible, X_relevant)``, both CSR."""
        X = check_interactions(X, name="X")
        if X.nnz and not np.all(X.data != 0):
            X = X.copy()
            X.eliminate_zeros()
        visible, hidden = _hide_per_row(X, _parse_holdout(self.holdout),
                                        check_random_state(self.random_state))
        return visible, _relevant(hidden, self.relevance_threshold)

    def __call__(self, estimator, X, y=None):
        visible, relevant = self.split(X)
        rows = np.flatnonzero(np.diff(relevant.indptr))
        if rows.size == 0:
            return _no_user(repr(self))
        ids = _recommend(estimator, visible[rows], self.k)
        res = topk_metrics(relevant[rows], ids, self.k, metrics=(self.metric,),
                           gains=self.gains, denominator=self.denominator)
        return res[self.metric]

    def __repr__(self):
        extra = ""
        if self.relevance_threshold is not None:
            extra += f", relevance_threshold={self.relevance_threshold!r}"
        if self.gains != "binary":
            extra += f", gains={self.gains!r}"
        if self.denominator != "relevant":
            extra += f", denominator={self.denominator!r}"
        return (f"make_topk_scorer({self.metric!r}, k={self.k}, holdout={self.holdout!r}, "
                f"random_state={self.random_state!r}{extra})")


@dataclass(repr=False, eq=False)
class _RatingScorer:
    """Callable ``scorer(estimator, X, y=None) -> float``; built by :func:`make_rating_scorer`."""

    metric: str
    holdout: object
    random_state: object
    batch_size: int | None

    def split(self, X):
        """The fold-in split of the rows of ``X``: ``(X_visible, X_hidden)``, both CSR."""
        X = check_interactions(X, dtype=None, canonical=True, ensure_min_samples=0)
        return _hide_per_row(X, _parse_holdout(self.holdout),
                             check_random_state(self.random_state))

    def __call__(self, estimator, X, y=None):
        visible, hidden = self.split(X)
        if hidden.nnz == 0:
            return _no_user(repr(self))
        y_true, y_pred = _predict_entries(estimator, visible, hidden, self.batch_size)
        return -(rmse if self.metric == "rmse" else mae)(y_true, y_pred)

    def __repr__(self):
        return (f"make_rating_scorer({self.metric!r}, holdout={self.holdout!r}, "
                f"random_state={self.random_state!r})")


@validate_args({"k": [Interval(numbers.Integral, 1, None, closed="left")],
                "relevance_threshold": [Interval(numbers.Real, None, None, closed="neither"),
                                        None]})
def make_topk_scorer(metric="ndcg", k=10, holdout=0.2, random_state=0, *,
                     relevance_threshold=None, gains="binary", denominator="relevant"):
    """A scorer for top-k recommendation by fold-in of held-out interactions.

    The returned callable ``scorer(estimator, X, y=None) -> float`` can be
    passed as ``scoring=`` to :class:`~sklearn.model_selection.GridSearchCV`,
    :func:`~sklearn.model_selection.cross_val_score` and friends. On the rows
    of ``X`` (users the estimator was not fitted on) it does:

    1. hide part of each row (``holdout``):

       - a float ``p`` in (0, 1): ``floor(p * n_u)`` of the row's ``n_u``
         interactions, chosen at random (rows with fewer than ``1 / p``
         interactions hide nothing);
       - an int ``n``: ``n`` random interactions of each row holding more
         than ``n``;
       - ``"top:n"``: the row's ``n`` highest-valued (highest-rated)
         interactions, for rows holding more than ``n`` (so that something
         is left to fold in); ties between equal ratings are broken at random,
         reproducibly for a given ``random_state``;

    2. fold in the visible rest: ``ids = estimator.recommend(X_visible, k,
       exclude_seen=True)`` (visible items are never recommended); for a
       :class:`~sklearn.pipeline.Pipeline`, ``X_visible`` goes through its
       transformers and the last step recommends, its seen items being the
       non-zeros of the transformed rows;
    3. the hidden items (those rated ``>= relevance_threshold`` if given) are
       the relevant set, and ``metric`` at ``k`` is averaged, by
       :func:`sksvd.metrics.topk_metrics`, over the rows that have one; rows
       with no relevant hidden item are skipped (not recommended for).

    The split depends only on ``X`` and ``random_state``, so with the default
    int seed every candidate of a search is scored on the same hidden items;
    with ``random_state=None`` each call draws a new split. Splitting is
    vectorized (one sort of the stored entries, no loop per user).

    Parameters
    ----------
    metric : {"ndcg", "recall", "precision", "map", "hit_rate", "mrr"}, default="ndcg"
        See :mod:`sksvd.metrics` for the exact formulas.
    k : int >= 1, default=10
        Length of the recommended lists (at most the number of items).
    holdout : float in (0, 1), int >= 1 or str "top:n", default=0.2
    random_state : int, RandomState instance or None, default=0
    relevance_threshold : float, default=None
        Only hidden items with a value ``>=`` this are relevant.
    gains : {"binary", "graded", "exponential"}, default="binary"
        Gains of NDCG (the hidden values are the graded relevance).
    denominator : {"relevant", "min"}, default="relevant"
        Denominator of recall: ``|R_u|`` or ``min(k, |R_u|)``.

    Returns
    -------
    scorer : callable
        Greater is better. ``scorer.split(X)`` returns the
        ``(X_visible, X_relevant)`` pair it would use.

    Examples
    --------
    >>> from sksvd.model_selection import make_topk_scorer
    >>> make_topk_scorer("ndcg", k=10, holdout="top:10")
    make_topk_scorer('ndcg', k=10, holdout='top:10', random_state=0)
    >>> make_topk_scorer("auc")
    Traceback (most recent call last):
    ...
    ValueError: metric='auc': expected one of 'ndcg', 'recall', 'precision', 'map', 'hit_rate', 'mrr'

    Choosing a rank by cross-validation over users:

    >>> import scipy.sparse as sp
    >>> from sklearn.model_selection import GridSearchCV, KFold
    >>> from sksvd import SVDRecommender
    >>> X = sp.random(90, 40, density=0.3, format="csr", random_state=0)
    >>> search = GridSearchCV(SVDRecommender(random_state=0), {"n_components": [2, 4]},
    ...                       scoring=make_topk_scorer("ndcg", k=5),
    ...                       cv=KFold(3, shuffle=True, random_state=0)).fit(X)
    >>> search.cv_results_["mean_test_score"].shape
    (2,)
    """
    if metric not in RANKING_METRICS:
        raise ValueError(
            f"metric={metric!r}: expected one of {', '.join(map(repr, RANKING_METRICS))}"
        )
    k = int(k)
    _parse_holdout(holdout)
    relevance_threshold = None if relevance_threshold is None else float(relevance_threshold)
    check_choice(gains, "gains", GAINS)
    check_choice(denominator, "denominator", DENOMINATORS)
    return _TopKScorer(metric, k, holdout, random_state, relevance_threshold, gains,
                       denominator)


@validate_args({"batch_size": [Interval(numbers.Integral, 1, None, closed="left"), None]})
def make_rating_scorer(metric="rmse", holdout=0.2, random_state=0, *, batch_size=None):
    """A scorer for rating prediction on held-out entries: negated RMSE or MAE.

    For the rows of ``X``, the entries chosen by ``holdout`` (as in
    :func:`make_topk_scorer`: a float share, an int count or ``"top:n"``)
    are hidden; ``estimator.predict`` is called on the visible rest, batch
    of rows by batch of rows (only rows with a hidden entry, ``batch_size``
    at a time: the dense matrix of all users is never built), and the
    predictions at the hidden entries are compared with their values by
    :func:`sksvd.metrics.rmse` or :func:`sksvd.metrics.mae` (every hidden
    entry counts once). The score is negated so that greater is better, as
    scikit-learn's ``neg_root_mean_squared_error``.

    Parameters
    ----------
    metric : {"rmse", "mae"}, default="rmse"
    holdout : float in (0, 1), int >= 1 or str "top:n", default=0.2
    random_state : int, RandomState instance or None, default=0
    batch_size : int, default=None
        Rows predicted at a time (default: 64 MiB blocks of predictions).

    Returns
    -------
    scorer : callable ``scorer(estimator, X, y=None) -> float``
        ``scorer.split(X)`` returns the ``(X_visible, X_hidden)`` pair it
        would use.

    Examples
    --------
    >>> from sksvd.model_selection import make_rating_scorer
    >>> make_rating_scorer("mae", holdout=0.1)
    make_rating_scorer('mae', holdout=0.1, random_state=0)
    """
    if metric not in _RATING_METRICS:
        raise ValueError(f"metric={metric!r}: expected 'rmse' or 'mae'")
    _parse_holdout(holdout)
    batch_size = None if batch_size is None else int(batch_size)
    return _RatingScorer(metric, holdout, random_state, batch_size)


# --------------------------------------------------------------------------- evaluate
def evaluate(estimator, X_train, X_test, metrics=("ndcg", "recall", "map"), k=10,
             relevance_threshold=None, *, fit="auto", exclude_seen=True, gains="binary",
             denominator="relevant"):
    """Evaluate a recommender on a train/test split of the same users (weak generalisation).

    1. With ``fit="auto"`` the estimator is fitted on ``X_train`` if it is
       not fitted yet (:func:`~sklearn.utils.validation.check_is_fitted`
       fails) and used as it is otherwise; ``fit=True`` always fits (in
       place), ``fit=False`` never does.
    2. Each user ``u`` (row of ``X_train``) whose test row has a relevant
       entry (a stored entry of ``X_test``, with value
       ``>= relevance_threshold`` when given) gets ``recommend(X_train[u], k,
       exclude_seen)``: its train items are folded in and, by default,
       excluded. Users with no relevant test item are skipped and counted.
    3. Ranking metrics are computed by :func:`sksvd.metrics.topk_metrics`
       (the formulas are in :mod:`sksvd.metrics`); ``"coverage"`` is the
       catalogue coverage of the evaluated users' lists; ``"rmse"`` and
       ``"mae"`` compare ``predict(X_train rows)`` with *every* stored entry
       of ``X_test`` (no threshold).

    Parameters
    ----------
    estimator : recommender or Pipeline ending in one
    X_train, X_test : {array-like, sparse matrix} of shape (n_users, n_items)
        The same users in the same rows, e.g. from
        :func:`train_test_split_interactions` or a MovieLens fold.
    metrics : sequence of str, default=("ndcg", "recall", "map")
        Among "ndcg", "recall", "precision", "map", "hit_rate", "mrr",
        "coverage", "rmse", "mae".
    k : int, default=10
    relevance_threshold : float, default=None
        E.g. ``4`` for "rated 4 or more" on MovieLens.
    fit : {"auto", True, False}, default="auto"
    exclude_seen : bool, default=True
    gains : {"binary", "graded", "exponential"}, default="binary"
        Gains of NDCG.
    denominator : {"relevant", "min"}, default="relevant"
        Denominator of recall.

    Returns
    -------
    dict
        ``{metric: value}`` in the order asked, then ``"n_users"`` (users
        evaluated) and ``"n_skipped"`` (users with no relevant test item).

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd.model_selection import evaluate, train_test_split_interactions
    >>> X = np.array([[5, 4, 0, 1], [4, 5, 1, 0], [0, 1, 5, 4]], dtype=float)
    >>> X_train, X_test = train_test_split_interactions(X, test_size=1, random_state=0)
    >>> X_test.nnz
    3
    >>> from sksvd import SVDRecommender
    >>> res = evaluate(SVDRecommender(n_components=2, random_state=0), X_train, X_test,
    ...                metrics=("ndcg", "recall"), k=2)
    >>> list(res)
    ['ndcg', 'recall', 'n_users', 'n_skipped']
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    allowed = RANKING_METRICS + ("coverage",) + _RATING_METRICS
    for m in metrics:
        if m not in allowed:
            raise ValueError(
                f"metrics: unknown metric {m!r}; expected some of {', '.join(allowed)}"
            )
    if not (fit == "auto" if isinstance(fit, str) else isinstance(fit, (bool, np.bool_))):
        raise ValueError(f"fit={fit!r}: expected 'auto', True or False")
    relevance_threshold = _check_threshold(relevance_threshold)
    X_train = check_interactions(X_train, name="X_train")
    X_test = check_interactions(X_test, name="X_test", dtype=None, canonical=True,
                                ensure_min_samples=0)
    if X_test.shape != X_train.shape:
        raise ValueError(
            f"X_test: expected the shape of X_train {X_train.shape}, got {X_test.shape}"
        )
    k = check_k(k, X_train.shape[1])

    if fit == "auto":
        try:
            check_is_fitted(estimator)
        except NotFittedError:
            fit = True
    if fit is True or fit is np.True_:
        estimator.fit(X_train)
    else:
        check_is_fitted(estimator)

    n_users = X_train.shape[0]
    relevant = _relevant(X_test, relevance_threshold)
    rows = np.flatnonzero(np.diff(relevant.indptr))
    ranking = [m for m in metrics if m not in _RATING_METRICS]
    out = {}
    if ranking:
        if rows.size:
            ids = _recommend(estimator, X_train[rows], k, exclude_seen)
            res = topk_metrics(relevant[rows], ids, k, metrics=ranking, gains=gains,
                               denominator=denominator)
        else:
            res = {m: _no_user("evaluate") for m in ranking}
        out.update({m: res[m] for m in ranking})
    if any(m in _RATING_METRICS for m in metrics):
        if X_test.nnz == 0:
            raise ValueError("X_test: has no stored entry to compute rmse / mae on")
        y_true, y_pred = _predict_entries(estimator, X_train, X_test)
        for m in metrics:
            if m in _RATING_METRICS:
                out[m] = (rmse if m == "rmse" else mae)(y_true, y_pred)
    out = {m: out[m] for m in metrics}
    out["n_users"] = int(rows.size)
    out["n_skipped"] = int(n_users - rows.size)
    return out
