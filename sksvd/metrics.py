"""Ranking metrics for top-k lists, and rating errors.

All ranking metrics compare, user by user, a list of recommended item ids
with the set of items relevant to that user:

``y_true`` : sparse matrix of shape (n_users, n_items)
    The relevant items of each user: every stored non-zero entry is
    relevant, its value is the graded relevance (e.g. the rating) used by
    graded NDCG. Apply a threshold (``ratings >= 4``) before calling if only
    some entries should count; :func:`sksvd.model_selection.evaluate` does it.
``ids`` : int array of shape (n_users, >= k)
    Recommended item ids, best first; ``-1`` is padding (a place with no
    recommendation, as returned by ``recommend`` when fewer than ``k`` items
    are left) and never counts as a hit. Ids must not repeat within a row.

Notation for one user ``u``: ``R_u`` is its relevant set, ``n_u = |R_u|``,
``h_j = 1`` if the item at rank ``j`` (1-based, ``j <= k``) is in ``R_u``,
else 0, and ``H_u = sum_j h_j``.

**Users with no relevant item** (``n_u = 0``) are *skipped*: they are
excluded from the mean, and their per-user value is ``NaN`` with
``per_user=True``, so ``np.isnan(values).sum()`` is the number skipped.
:func:`topk_metrics` reports the counts as ``n_users`` (evaluated) and
``n_skipped``. If every user is skipped the mean is ``NaN`` and an
:class:`~sklearn.exceptions.UndefinedMetricWarning` is emitted.

Every metric, whether called alone, through :func:`topk_metrics`, through
the scorers of :mod:`sksvd.model_selection`, the command line or the
benchmarks, goes through one vectorized routine that looks up the
(n_users, k) hit matrix in the CSR structure of ``y_true`` once (a sorted
search over ``user * n_items + item`` keys: no Python loop per user).
"""

from __future__ import annotations

import numbers
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import mean_absolute_error, root_mean_squared_error
from sklearn.utils._param_validation import Interval

from ._validation import (
    DENOMINATORS,
    GAINS,
    check_choice,
    check_interactions,
    validate_args,
)

__all__ = [
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "map_at_k",
    "hit_rate_at_k",
    "mrr_at_k",
    "catalog_coverage",
    "rmse",
    "mae",
    "topk_metrics",
    "RANKING_METRICS",
]

#: Names accepted by :func:`topk_metrics` and the scorers, in a fixed order.
RANKING_METRICS = ("ndcg", "recall", "precision", "map", "hit_rate", "mrr")


_RANKING_PARAMETERS = """Parameters
    ----------
    y_true : sparse matrix or array-like of shape (n_users, n_items)
        Relevant items of each user: its nonzero entries.
    ids : array-like of int, shape (n_users, >= k)
        Recommended item ids, best first; ``-1`` is padding.
    k : int, default=10
        The first ``k`` ids of each row are scored for the {what}.
{extra}    per_user : bool, default=False
        Return per-user values (``NaN`` for skipped users).

    Returns
    -------
    float or ndarray of shape (n_users,)
        The mean {what} over evaluated users, or one value per user."""


def _ranking_doc(what, extra=""):
    """Fill the ``{parameters}`` line of a ranking metric's docstring (one text for all)."""

    def fill(func):
        func.__doc__ = func.__doc__.replace(
            "{parameters}", _RANKING_PARAMETERS.format(what=what, extra=extra))
        return func

    return fill


# --------------------------------------------------------------------------- validation
def _check_y_true(y_true):
    """CSR float64, sorted indices, duplicates summed, explicit zeros dropped; never in place."""
    return check_interactions(y_true, name="y_true", dtype=np.float64, canonical=True,
                              ensure_min_samples=0)


def _check_ids(ids, k, *, n_users=None, n_items=None, name="ids"):
    """Return ``ids[:, :k]`` as int64 after checking shape, range and uniqueness per row."""
    arr = np.asarray(ids)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_users, k), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected integer item ids, got dtype {arr.dtype}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k={k!r}: expected an int, got {type(k).__name__}")
    if not 1 <= k <= arr.shape[1]:
        raise ValueError(
            f"k={k}: expected an int in [1, {arr.shape[1]}] (the number of columns of {name})"
        )
    if n_users is not None and arr.shape[0] != n_users:
        raise ValueError(
            f"{name}: expected {n_users} rows (one per row of y_true), got {arr.shape[0]}"
        )
    arr = arr[:, :k].astype(np.int64, copy=False)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < -1:
            raise ValueError(f"{name}: item id {lo} out of range (ids are >= 0, -1 is padding)")
        if n_items is not None and hi >= n_items:
            raise ValueError(f"{name}: item id {hi} out of range [0, {n_items})")
        s = np.sort(arr, axis=1)
        dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
        if dup.any():
            row = int(np.flatnonzero(dup.any(axis=1))[0])
            item = int(s[row, 1:][dup[row]][0])
            raise ValueError(f"{name}: row {row} recommends item {item} more than once")
    return arr


# --------------------------------------------------------------------------- the one core
class _Hits(NamedTuple):
    hits: np.ndarray        # (n_users, k) bool: item at rank j is relevant
    rel: np.ndarray         # (n_users, k) float64: its relevance value (0 when not a hit)
    n_relevant: np.ndarray  # (n_users,) int64: |R_u|


def _lookup_hits(Y, ids):
    """Hit matrix of ``ids`` (n, k) against the canonical CSR ``Y`` (n, n_items), vectorized.

    The entries of a canonical CSR matrix, keyed ``row * n_items + column``,
    are sorted; one :func:`numpy.searchsorted` finds every recommended
    ``(u, item)`` pair among them.
    """
    n_users, n_items = Y.shape
    counts = np.diff(Y.indptr).astype(np.int64)
    hits = np.zeros(ids.shape, dtype=bool)
    rel = np.zeros(ids.shape, dtype=np.float64)
    if Y.nnz and ids.size:
        keys = np.repeat(np.arange(n_users, dtype=np.int64), counts) * n_items
        keys += Y.indices
        query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + ids
        pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
        hits = (keys[pos] == query) & (ids >= 0)
        rel = np.where(hits, Y.data[pos], 0.0)
    return _Hits(hits, rel, counts)


def _ideal_dcg(Y, k, gains, discount):
    """IDCG@k per row: the row's best ``min(k, n_u)`` gains, sorted, times the discounts."""
    n_users = Y.shape[0]
    counts = np.diff(Y.indptr).astype(np.int64)
    if gains == "binary":
        cum = np.concatenate([[0.0], np.cumsum(discount)])
        return cum[np.minimum(counts, k)]
    rows = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    order = np.lexsort((-Y.data, rows))  # by row, then by value descending
    rank = np.arange(Y.nnz, dtype=np.int64) - Y.indptr[rows]  # rows[order] == rows
    keep = rank < k
    g = _gain(Y.data[order][keep], gains)
    return np.bincount(rows[keep], weights=g * discount[rank[keep]], minlength=n_users)


def _gain(rel, gains):
    return rel if gains == "graded" else np.exp2(rel) - 1.0


def _per_user(name, Y, H, k, *, gains="binary", denominator="relevant"):
    """Per-user values of one metric from the hit matrix; NaN where ``n_u = 0``."""
    hits = H.hits
    n_rel = H.n_relevant
    n_hits = hits.sum(axis=1)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "precision":
            v = n_hits / k
        elif name == "recall":
            den = n_rel if denominator == "relevant" else np.minimum(n_rel, k)
            v = n_hits / den
        elif name == "ndcg":
            discount = 1.0 / np.log2(ranks + 1.0)
            g = hits.astype(np.float64) if gains == "binary" else _gain(H.rel, gains)
            v = (g * discount).sum(axis=1) / _ideal_dcg(Y, k, gains, discount)
        elif name == "map":
            prec = np.cumsum(hits, axis=1) / ranks
            v = (prec * hits).sum(axis=1) / np.minimum(n_rel, k)
        elif name == "hit_rate":
            v = hits.any(axis=1).astype(np.float64)
        elif name == "mrr":
            first = np.argmax(hits, axis=1)
            v = np.where(hits.any(axis=1), 1.0 / (first + 1.0), 0.0)
        else:  # pragma: no cover - names are checked by the callers
            raise ValueError(f"metric={name!r}: unknown")
    v = np.asarray(v, dtype=np.float64)
    v[n_rel == 0] = np.nan
    return v


def _mean(values, name):
    n = int(np.count_nonzero(~np.isnan(values)))
    if n == 0:
        warnings.warn(f"{name}: no user has a relevant item; the mean is NaN",
                      UndefinedMetricWarning, stacklevel=3)
        return float("nan")
    return float(np.nanmean(values))


def _one_metric(name, y_true, ids, k, per_user, **params):
    Y = _check_y_true(y_true)
    ids = _check_ids(ids, k, n_users=Y.shape[0], n_items=Y.shape[1])
    if not isinstance(per_user, (bool, np.bool_)):
        raise TypeError(f"per_user={per_user!r}: expected a bool")
    values = _per_user(name, Y, _lookup_hits(Y, ids), k, **params)
    return values if per_user else _mean(values, f"{name}@{k}")


# --------------------------------------------------------------------------- public metrics
def ndcg_at_k(y_true, ids, k=10, *, gains="binary", per_user=False):
    """Normalized discounted cumulative gain at ``k`` (Jarvelin and Kekalainen, 2002).

    For a user ``u`` with relevant set ``R_u`` (``n_u = |R_u| > 0``)::

        DCG@k  = sum_{j=1..k} g(item at rank j) / log2(j + 1)
        IDCG@k = sum_{j=1..min(k, n_u)} g*_j / log2(j + 1)
        NDCG@k = DCG@k / IDCG@k

    where ``g*_1 >= g*_2 >= ...`` are the gains of the items of ``R_u`` sorted
    in decreasing order (the ideal list is truncated at ``k``). Gains:
    ``"binary"``: ``g = 1`` for a relevant item; ``"graded"``: ``g = rel``,
    the stored value (the linear gain of :func:`sklearn.metrics.ndcg_score`);
    ``"exponential"``: ``g = 2**rel - 1`` (Burges et al., 2005); items not in
    ``R_u`` and padding (``-1``) have gain 0. The result is the mean of
    ``NDCG@k`` over users with ``n_u > 0``; users with ``n_u = 0`` are
    skipped (see the module docstring).

    Parameters
    ----------
    y_true : sparse matrix or array-like of shape (n_users, n_items)
        Relevant items per user; stored non-zero values are the relevance.
    ids : array-like of int, shape (n_users, >= k)
        Recommended item ids, best first; ``-1`` is padding.
    k : int, default=10
        Length of the list evaluated: the first ``k`` columns of ``ids``.
    gains : {"binary", "graded", "exponential"}, default="binary"
        ``"graded"`` and ``"exponential"`` need non-negative relevance values.
    per_user : bool, default=False
        Return the (n_users,) array of per-user values, ``NaN`` for skipped
        users, instead of their mean.

    Returns
    -------
    float or ndarray of shape (n_users,)
        The mean NDCG over evaluated users, or one value per user.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from sksvd.metrics import ndcg_at_k
    >>> y_true = sp.csr_matrix([[1, 0, 0, 1], [0, 0, 0, 0]])
    >>> ids = [[3, 1, 0], [0, 1, 2]]      # hits at ranks 1 and 3; user 1 skipped
    >>> round(ndcg_at_k(y_true, ids, k=3), 4)   # (1 + 1/2) / (1 + 1/log2(3))
    0.9197
    >>> ndcg_at_k(y_true, ids, k=3, per_user=True).round(4)
    array([0.9197,    nan])
    """
    check_choice(gains, "gains", GAINS)
    if gains != "binary":
        Y = _check_y_true(y_true)
        if Y.nnz and Y.data.min() < 0:
            raise ValueError(
                f"y_true: gains={gains!r} needs non-negative relevance values, found "
                f"{Y.data.min():g}"
            )
        y_true = Y
    return _one_metric("ndcg", y_true, ids, k, per_user, gains=gains)


@_ranking_doc('precision')
def precision_at_k(y_true, ids, k=10, *, per_user=False):
    """Precision at ``k``: the share of the ``k`` places holding a relevant item.

    For a user with ``n_u > 0`` relevant items::

        P@k = |{j <= k : item at rank j in R_u}| / k

    The denominator is always ``k``, even when the list is padded with
    ``-1`` (fewer than ``k`` items could be recommended) or when
    ``n_u < k`` (so the best possible value is then ``n_u / k``). Mean over
    users with ``n_u > 0``; others are skipped.

    {parameters}

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from sksvd.metrics import precision_at_k
    >>> y_true = sp.csr_matrix([[1, 0, 0, 1]])
    >>> precision_at_k(y_true, [[3, 1, -1]], k=3)     # 1 hit / 3 places
    0.3333333333333333
    """
    return _one_metric("precision", y_true, ids, k, per_user)


@_ranking_doc('recall', extra='    denominator : {"relevant", "min"}, default="relevant"\n')
def recall_at_k(y_true, ids, k=10, *, denominator="relevant", per_user=False):
    """Recall at ``k``: the share of the user's relevant items found in the top ``k``.

    For a user with ``n_u > 0`` relevant items and ``H_u`` hits in the top ``k``::

        denominator="relevant" (default):  R@k = H_u / n_u
        denominator="min":                 R@k = H_u / min(k, n_u)

    The default is the common definition (and the one of the reference
    numbers of the benchmarks); it cannot reach 1 when ``n_u > k``.
    ``"min"`` is the normalised recall of Liang et al. (2018, "Variational
    autoencoders for collaborative filtering"), which reaches 1 for a perfect
    list. Mean over users with ``n_u > 0``; others are skipped.

    {parameters}

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from sksvd.metrics import recall_at_k
    >>> y_true = sp.csr_matrix([[1, 1, 1, 1, 0]])     # 4 relevant items
    >>> recall_at_k(y_true, [[0, 4]], k=2)            # 1 / 4
    0.25
    >>> recall_at_k(y_true, [[0, 4]], k=2, denominator="min")   # 1 / min(2, 4)
    0.5
    """
    check_choice(denominator, "denominator", DENOMINATORS)
    return _one_metric("recall", y_true, ids, k, per_user, denominator=denominator)


@_ranking_doc('average precision')
def map_at_k(y_true, ids, k=10, *, per_user=False):
    """Mean average precision at ``k``.

    For a user with ``n_u > 0`` relevant items, with ``h_j`` the hit
    indicator at rank ``j`` and ``P@j`` the precision of the first ``j``::

        AP@k = (1 / min(k, n_u)) * sum_{j=1..k} h_j * P@j

    (the denominator ``min(k, n_u)`` makes a perfect list score 1; it is the
    definition of ``ml_metrics.apk`` and of implicit's
    ``mean_average_precision_at_k``). ``MAP@k`` is the mean of ``AP@k`` over
    users with ``n_u > 0``; others are skipped. With ``k = n_items`` and a
    full ranking it equals :func:`sklearn.metrics.average_precision_score`.

    {parameters}

    Examples
    --------
    >>> from sksvd.metrics import map_at_k
    >>> map_at_k([[1, 0, 1, 0]], [[0, 1, 2]], k=3)    # (1/1 + 2/3) / min(3, 2)
    0.8333333333333333
    """
    return _one_metric("map", y_true, ids, k, per_user)


@_ranking_doc('hit rate')
def hit_rate_at_k(y_true, ids, k=10, *, per_user=False):
    """Hit rate at ``k``: the share of users with at least one relevant item in their top ``k``.

    Per user with ``n_u > 0``: ``HR@k = 1 if H_u >= 1 else 0``; the mean is
    over users with ``n_u > 0`` (others are skipped), i.e. the denominator is
    the number of evaluated users.

    {parameters}

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd.metrics import hit_rate_at_k
    >>> hit_rate_at_k(np.eye(2, 3), [[2, 0], [2, 0]], k=2)
    0.5
    """
    return _one_metric("hit_rate", y_true, ids, k, per_user)


@_ranking_doc('reciprocal rank')
def mrr_at_k(y_true, ids, k=10, *, per_user=False):
    """Mean reciprocal rank at ``k``.

    Per user with ``n_u > 0``: ``RR@k = 1 / j*`` where ``j*`` is the
    (1-based) rank of the first relevant item in the top ``k``, and 0 when
    there is none. Mean over users with ``n_u > 0``; others are skipped.

    {parameters}

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from sksvd.metrics import mrr_at_k
    >>> y_true = sp.csr_matrix([[0, 0, 1], [1, 0, 0]])
    >>> mrr_at_k(y_true, [[0, 2, 1], [1, 2, 0]], k=3)     # (1/2 + 1/3) / 2
    0.41666666666666663
    """
    return _one_metric("mrr", y_true, ids, k, per_user)


@validate_args({"n_items": [Interval(numbers.Integral, 1, None, closed="left")]})
def catalog_coverage(ids, n_items, k=None):
    """Catalogue coverage: the share of the catalogue recommended to at least one user.

    ::

        coverage = |{i : i appears in ids[:, :k], i >= 0}| / n_items

    Padding (``-1``) is not an item. Every row of ``ids`` counts (no user is
    skipped: relevance plays no part).

    Parameters
    ----------
    ids : array-like of int, shape (n_users, n_cols)
        Recommended item ids; ``-1`` is padding.
    n_items : int
        Size of the catalogue (the denominator).
    k : int, default=None
        Use only the first ``k`` columns (default: all of them).

    Returns
    -------
    float
        Share of the ``n_items`` items found in at least one list.

    Examples
    --------
    >>> from sksvd.metrics import catalog_coverage
    >>> catalog_coverage([[0, 1], [1, -1]], n_items=4)
    0.5
    """
    n_items = int(n_items)
    arr = np.asarray(ids)
    if arr.ndim != 2:
        raise ValueError(f"ids: expected a 2-D array (n_users, k), got shape {arr.shape}")
    if k is None:
        if arr.shape[1] == 0:
            return 0.0
        k = arr.shape[1]
    arr = _check_ids(arr, k, n_items=n_items)
    seen = np.zeros(n_items, dtype=bool)
    seen[arr[arr >= 0]] = True
    return float(seen.sum() / n_items)


def _check_pair(y_true, y_pred):
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(
            f"y_true, y_pred: expected 1-D arrays, got shapes {a.shape} and {b.shape}"
        )
    if a.shape != b.shape:
        raise ValueError(
            f"y_true, y_pred: expected the same length, got {a.shape[0]} and {b.shape[0]}"
        )
    if a.size == 0:
        raise ValueError("y_true: expected at least one rating, got an empty array")
    for name, v in (("y_true", a), ("y_pred", b)):
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name}: contains NaN or infinity")
    return a, b


def rmse(y_true, y_pred):
    """Root mean squared error of rating predictions.

    ::

        RMSE = sqrt( (1 / n) * sum_{(u, i)} (r_ui - r_hat_ui)**2 )

    over the ``n`` given (user, item) pairs (every pair counts once; there
    is no per-user averaging and nothing is skipped).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        True and predicted ratings of the same pairs.

    Returns
    -------
    float
        The RMSE, by :func:`sklearn.metrics.root_mean_squared_error`.

    Examples
    --------
    >>> from sksvd.metrics import rmse
    >>> rmse([4, 2], [3, 2])      # sqrt((1 + 0) / 2)
    0.7071067811865476
    """
    a, b = _check_pair(y_true, y_pred)
    return float(root_mean_squared_error(a, b))


def mae(y_true, y_pred):
    """Mean absolute error of rating predictions.

    ::

        MAE = (1 / n) * sum_{(u, i)} |r_ui - r_hat_ui|

    over the ``n`` given (user, item) pairs (no per-user averaging).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)

    Returns
    -------
    float
        Mean of ``|y_true - y_pred|`` (:func:`sklearn.metrics.mean_absolute_error`).

    Examples
    --------
    >>> from sksvd.metrics import mae
    >>> mae([4, 2], [3, 2.5])
    0.75
    """
    a, b = _check_pair(y_true, y_pred)
    return float(mean_absolute_error(a, b))


def topk_metrics(y_true, ids, k=10, metrics=("ndcg", "recall", "precision", "map"), *,
                 gains="binary", denominator="relevant", per_user=False):
    """Several ranking metrics at ``k`` from one lookup of the hit matrix.

    Each metric is exactly the one of the function of the same name
    (:func:`ndcg_at_k` with ``gains``, :func:`recall_at_k` with
    ``denominator``, ...). ``"coverage"`` is :func:`catalog_coverage` of
    ``ids[:, :k]`` over the users evaluated (those with a relevant item),
    with ``n_items = y_true.shape[1]``.

    Parameters
    ----------
    y_true : sparse matrix or array-like of shape (n_users, n_items)
    ids : array-like of int, shape (n_users, >= k)
    k : int, default=10
    metrics : sequence of str, default=("ndcg", "recall", "precision", "map")
        Among "ndcg", "recall", "precision", "map", "hit_rate", "mrr",
        "coverage".
    gains : {"binary", "graded", "exponential"}, default="binary"
        For "ndcg".
    denominator : {"relevant", "min"}, default="relevant"
        For "recall".
    per_user : bool, default=False
        Per-user arrays (``NaN`` for skipped users) instead of means
        ("coverage" stays a float).

    Returns
    -------
    dict
        One entry per metric, plus ``"n_users"`` (users evaluated, with at
        least one relevant item) and ``"n_skipped"`` (users without).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from sksvd.metrics import topk_metrics
    >>> y_true = sp.csr_matrix([[1, 0, 1, 0], [0, 0, 0, 0]])
    >>> topk_metrics(y_true, [[0, 1, 2], [0, 1, 2]], k=2, metrics=("precision", "recall"))
    {'precision': 0.5, 'recall': 0.5, 'n_users': 1, 'n_skipped': 1}
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    allowed = RANKING_METRICS + ("coverage",)
    for m in metrics:
        if m not in allowed:
            raise ValueError(
                f"metrics: unknown metric {m!r}; expected some of {', '.join(allowed)}"
            )
    check_choice(gains, "gains", GAINS)
    check_choice(denominator, "denominator", DENOMINATORS)
    Y = _check_y_true(y_true)
    if gains != "binary" and Y.nnz and Y.data.min() < 0:
        raise ValueError(
            f"y_true: gains={gains!r} needs non-negative relevance values, found "
            f"{Y.data.min():g}"
        )
    ids = _check_ids(ids, k, n_users=Y.shape[0], n_items=Y.shape[1])
    H = _lookup_hits(Y, ids)
    evaluated = H.n_relevant > 0
    out = {}
    for m in metrics:
        if m == "coverage":
            out[m] = catalog_coverage(ids[evaluated], Y.shape[1], k) if evaluated.any() else 0.0
            continue
        values = _per_user(m, Y, H, k, gains=gains, denominator=denominator)
        out[m] = values if per_user else _mean(values, f"{m}@{k}")
    out["n_users"] = int(evaluated.sum())
    out["n_skipped"] = int(Y.shape[0] - evaluated.sum())
    return out
