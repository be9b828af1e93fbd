"""Tests of sksvd.metrics: hand-worked cases, scikit-learn, and a per-user reference loop."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    average_precision_score,
    mean_absolute_error,
    ndcg_score,
    root_mean_squared_error,
)

from sksvd.metrics import (
    catalog_coverage,
    hit_rate_at_k,
    mae,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    rmse,
    topk_metrics,
)

L2, L3, L4 = 1.0, 1.0 / math.log2(3), 1.0 / math.log2(4)  # discounts of ranks 1, 2, 3


@pytest.fixture
def case():
    """Four users, six items, k = 3; user 2 has no relevant item."""
    y_true = sp.csr_matrix(np.array([
        [1, 0, 1, 1, 0, 1],   # u0: R = {0, 2, 3, 5}
        [0, 1, 0, 0, 0, 0],   # u1: R = {1}
        [0, 0, 0, 0, 0, 0],   # u2: skipped
        [3, 0, 0, 5, 0, 1],   # u3: R = {0: 3, 3: 5, 5: 1}
    ], dtype=float))
    ids = np.array([
        [2, 4, 0, 1],    # hits at ranks 1 and 3
        [0, 3, -1, -1],  # no hit, padded
        [0, 1, 2, 3],
        [5, 0, 1, 2],    # hits at ranks 1 (rel 1) and 2 (rel 3)
    ])
    return y_true, ids


def test_hand_worked_case(case):
    y_true, ids = case
    nan = np.nan
    expect = {
        precision_at_k: [2 / 3, 0, nan, 2 / 3],
        recall_at_k: [2 / 4, 0, nan, 2 / 3],
        ndcg_at_k: [(L2 + L4) / (L2 + L3 + L4), 0, nan, (L2 + L3) / (L2 + L3 + L4)],
        map_at_k: [(1 / 1 + 2 / 3) / 3, 0, nan, (1 / 1 + 2 / 2) / 3],
        hit_rate_at_k: [1, 0, nan, 1],
        mrr_at_k: [1, 0, nan, 1],
    }
    for fn, values in expect.items():
        got = fn(y_true, ids, k=3, per_user=True)
        np.testing.assert_allclose(got, values, rtol=1e-12, err_msg=fn.__name__)
        assert fn(y_true, ids, k=3) == pytest.approx(np.nanmean(values), rel=1e-12)


def test_hand_worked_options(case):
    y_true, ids = case
    # recall with min(k, n_u): u0 has 4 relevant items, k = 3
    np.testing.assert_allclose(recall_at_k(y_true, ids, 3, denominator="min", per_user=True),
                               [2 / 3, 0, np.nan, 2 / 3])
    # graded gains of u3: DCG = 1/1 + 3/log2(3); IDCG = 5 + 3/log2(3) + 1/2
    g = ndcg_at_k(y_true, ids, 3, gains="graded", per_user=True)[3]
    assert g == pytest.approx((1 * L2 + 3 * L3) / (5 * L2 + 3 * L3 + 1 * L4), rel=1e-12)
    e = ndcg_at_k(y_true, ids, 3, gains="exponential", per_user=True)[3]
    assert e == pytest.approx((1 * L2 + 7 * L3) / (31 * L2 + 7 * L3 + 1 * L4), rel=1e-12)
    # k = 1: only the first column
    np.testing.assert_allclose(precision_at_k(y_true, ids, 1, per_user=True), [1, 0, np.nan, 1])


def test_ideal_list_truncated_at_k():
    # 5 relevant items, k = 2, both hits: NDCG = 1 (the ideal list is cut at k) and AP = 1
    y_true = sp.csr_matrix(np.ones((1, 6)))
    assert ndcg_at_k(y_true, [[4, 1]], k=2) == pytest.approx(1.0)
    assert map_at_k(y_true, [[4, 1]], k=2) == pytest.approx(1.0)
    assert recall_at_k(y_true, [[4, 1]], k=2) == pytest.approx(2 / 6)
    assert recall_at_k(y_true, [[4, 1]], k=2, denominator="min") == pytest.approx(1.0)


def test_topk_metrics_counts_and_matches_single_functions(case):
    y_true, ids = case
    res = topk_metrics(y_true, ids, 3, metrics=("ndcg", "recall", "precision", "map", "hit_rate",
                                                 "mrr", "coverage"))
    assert res["n_users"] == 3 and res["n_skipped"] == 1
    assert res["ndcg"] == ndcg_at_k(y_true, ids, 3)
    assert res["map"] == map_at_k(y_true, ids, 3)
    assert res["mrr"] == mrr_at_k(y_true, ids, 3)
    # coverage of the evaluated users' top-3 (users 0, 1, 3): {0, 1, 2, 3, 4, 5}
    assert res["coverage"] == pytest.approx(6 / 6)
    per = topk_metrics(y_true, ids, 3, metrics=["recall"], per_user=True)
    assert np.isnan(per["recall"]).sum() == per["n_skipped"] == 1


def test_all_users_skipped_gives_nan_and_warns():
    y_true = sp.csr_matrix((2, 4))
    with pytest.warns(UndefinedMetricWarning, match="no user has a relevant item"):
        assert np.isnan(ndcg_at_k(y_true, [[0, 1], [1, 2]], k=2))


def _reference(y, ids, k):
    """Per-user loop over Python sets: an independent implementation."""
    out = {m: [] for m in ("precision", "recall", "hit_rate", "mrr", "map", "ndcg")}
    for u in range(y.shape[0]):
        rel = set(np.flatnonzero(y[u]))
        if not rel:
            continue
        hits = [i >= 0 and i in rel for i in ids[u, :k]]
        out["precision"].append(sum(hits) / k)
        out["recall"].append(sum(hits) / len(rel))
        out["hit_rate"].append(float(any(hits)))
        out["mrr"].append(next((1 / (j + 1) for j, h in enumerate(hits) if h), 0.0))
        ap, n = 0.0, 0
        for j, h in enumerate(hits):
            if h:
                n += 1
                ap += n / (j + 1)
        out["map"].append(ap / min(k, len(rel)))
        dcg = sum(1 / math.log2(j + 2) for j, h in enumerate(hits) if h)
        idcg = sum(1 / math.log2(j + 2) for j in range(min(k, len(rel))))
        out["ndcg"].append(dcg / idcg)
    return {m: float(np.mean(v)) for m, v in out.items()}


@pytest.mark.parametrize("k", [1, 5, 20])
def test_against_per_user_reference(k):
    rng = np.random.default_rng(0)
    n_users, n_items = 200, 40
    y = (rng.random((n_users, n_items)) < 0.1) * rng.integers(1, 6, (n_users, n_items))
    ids = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :20]
    ids[rng.random((n_users, 20)) < 0.1 * np.arange(20) / 20] = -1  # some padding
    ref = _reference(y, ids, k)
    got = topk_metrics(sp.csr_matrix(y), ids, k,
                       metrics=("precision", "recall", "hit_rate", "mrr", "map", "ndcg"))
    assert got["n_skipped"] == int((y.sum(1) == 0).sum())
    for m, v in ref.items():
        assert got[m] == pytest.approx(v, rel=1e-12), m


@pytest.mark.parametrize("k", [1, 3, 10, 30])
@pytest.mark.parametrize("graded", [False, True])
def test_ndcg_matches_sklearn(k, graded):
    rng = np.random.default_rng(1)
    n_users, n_items = 60, 30
    y = (rng.random((n_users, n_items)) < 0.2) * rng.integers(1, 6, (n_users, n_items))
    y[y.sum(1) == 0, 0] = 2  # sklearn counts users with no relevant item as 0: keep none
    if not graded:
        y = (y > 0).astype(float)
    scores = rng.random((n_users, n_items))  # continuous: no ties
    ids = np.argsort(-scores, axis=1)[:, :k]
    gains = "graded" if graded else "binary"
    ours = ndcg_at_k(sp.csr_matrix(y), ids, k=k, gains=gains, per_user=True)
    theirs = [ndcg_score(y[u:u + 1], scores[u:u + 1], k=k) for u in range(n_users)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    assert ndcg_at_k(sp.csr_matrix(y), ids, k=k, gains=gains) == pytest.approx(
        ndcg_score(y, scores, k=k), rel=1e-10)


def test_map_at_full_length_matches_sklearn_average_precision():
    rng = np.random.default_rng(2)
    n_users, n_items = 30, 25
    y = (rng.random((n_users, n_items)) < 0.3).astype(float)
    y[y.sum(1) == 0, 3] = 1
    scores = rng.random((n_users, n_items))
    ids = np.argsort(-scores, axis=1)
    ours = map_at_k(sp.csr_matrix(y), ids, k=n_items, per_user=True)
    theirs = [average_precision_score(y[u], scores[u]) for u in range(n_users)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_input_formats_and_caller_array_untouched():
    dense = np.array([[0, 2, 0, 1], [1, 0, 0, 0]], dtype=float)
    ids = np.array([[1, 3], [2, 0]])
    ref = ndcg_at_k(sp.csr_matrix(dense), ids, 2, gains="graded", per_user=True)
    for y in (dense, sp.csc_matrix(dense), sp.coo_matrix(dense), dense.tolist()):
        np.testing.assert_array_equal(ndcg_at_k(y, ids, 2, gains="graded", per_user=True), ref)
    # duplicates are summed, explicit zeros are not relevant; the caller's arrays are unchanged
    y = sp.csr_matrix((np.array([1.0, 1.0, 0.0]), np.array([1, 1, 0]), np.array([0, 3, 3])),
                      shape=(2, 4))
    before = (y.data.copy(), y.indices.copy(), y.indptr.copy())
    assert ndcg_at_k(y, [[1, 0], [0, 1]], 2, gains="graded") == pytest.approx(1.0)
    assert recall_at_k(y, [[0, 2], [0, 1]], 2) == 0.0  # item 0 is a stored zero: not relevant
    for a, b in zip(before, (y.data, y.indices, y.indptr), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(ids=[[0, 1]], k=3), ValueError, r"k=3: expected an int in \[1, 2\]"),
    (dict(ids=[[0, 1]], k=0), ValueError, r"k=0"),
    (dict(ids=[[0, 1]], k=1.5), TypeError, r"k=1.5"),
    (dict(ids=[0, 1], k=1), ValueError, r"ids: expected a 2-D array"),
    (dict(ids=[[0, 1], [1, 2]], k=1), ValueError, r"ids: expected 1 rows"),
    (dict(ids=[[0, 9]], k=2), ValueError, r"ids: item id 9 out of range \[0, 3\)"),
    (dict(ids=[[0, -2]], k=2), ValueError, r"ids: item id -2"),
    (dict(ids=[[1, 1]], k=2), ValueError, r"ids: row 0 recommends item 1 more than once"),
    (dict(ids=[[0.0, 1.0]], k=2), TypeError, r"ids: expected integer"),
])
def test_bad_ids_and_k(kwargs, err, match):
    with pytest.raises(err, match=match):
        ndcg_at_k(sp.csr_matrix([[1.0, 0, 0]]), **kwargs)


def test_bad_options_and_y_true():
    y = sp.csr_matrix([[1.0, 0, 0]])
    with pytest.raises(ValueError, match="gains='log'"):
        ndcg_at_k(y, [[0]], 1, gains="log")
    with pytest.raises(ValueError, match="denominator='k'"):
        recall_at_k(y, [[0]], 1, denominator="k")
    with pytest.raises(ValueError, match="y_true: gains='graded' needs non-negative"):
        ndcg_at_k(sp.csr_matrix([[-1.0, 0, 0]]), [[0]], 1, gains="graded")
    with pytest.raises(ValueError, match="y_true"):
        ndcg_at_k(np.array([[np.nan, 1.0, 0]]), [[0]], 1)
    with pytest.raises(ValueError, match="metrics: unknown metric 'auc'"):
        topk_metrics(y, [[0]], 1, metrics=("auc",))
    with pytest.raises(TypeError, match="per_user"):
        ndcg_at_k(y, [[0]], 1, per_user="yes")
    # padding only: no hit, but the user is still evaluated
    assert precision_at_k(y, [[-1, -1]], 2) == 0.0


def test_catalog_coverage():
    ids = np.array([[0, 1, 2], [1, -1, -1], [4, 0, 1]])
    assert catalog_coverage(ids, n_items=10) == pytest.approx(4 / 10)
    assert catalog_coverage(ids, n_items=10, k=1) == pytest.approx(3 / 10)  # {0, 1, 4}
    assert catalog_coverage(np.zeros((3, 0), dtype=int), n_items=5) == 0.0
    with pytest.raises(ValueError, match=r"item id 4 out of range \[0, 3\)"):
        catalog_coverage(ids, n_items=3)
    with pytest.raises(ValueError, match="n_items=0"):
        catalog_coverage(ids, n_items=0)


def test_rmse_mae_match_sklearn():
    rng = np.random.default_rng(3)
    a, b = rng.integers(1, 6, 100).astype(float), rng.random(100) * 5
    assert rmse(a, b) == pytest.approx(root_mean_squared_error(a, b), rel=1e-12)
    assert mae(a, b) == pytest.approx(mean_absolute_error(a, b), rel=1e-12)
    assert rmse([4, 2], [3, 2]) == pytest.approx(math.sqrt(0.5))
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        rmse([1, 2], [1])
    with pytest.raises(ValueError, match="y_pred: contains NaN"):
        mae([1, 2], [1, np.nan])
    with pytest.raises(ValueError, match="empty"):
        rmse([], [])
    with pytest.raises(ValueError, match="1-D"):
        rmse([[1]], [[1]])
