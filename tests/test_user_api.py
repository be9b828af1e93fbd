"""The API users of implicit and Surprise expect: filtering, candidates, learned user
vectors, neighbours, explanations, clipped ratings, Pipelines, scorer errors.

References are independent of the code under test: scores recomputed with numpy in
float64 from the fitted attributes and the models' published formulas, cosines by
numpy, rankings by a full sort (``np.lexsort``), MovieLens titles from its files.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Binarizer

from sksvd import AsySVD, FunkSVD, SVDRecommender
from sksvd.model_selection import make_rating_scorer, make_topk_scorer
from sksvd.pipeline import final_recommender, recommend

FAST = settings(max_examples=20, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _ratings(seed, n_users=40, n_items=25, density=0.3):
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n_users, n_items)) < density,
                     rng.integers(1, 6, (n_users, n_items)), 0).astype(np.float64)
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = 4.0  # no empty row
    return sp.csr_matrix(dense)


def _rating_model(cls, **kw):
    """A model trained on ratings: ``loss="mse"`` where the class has a loss parameter."""
    est = cls(**kw)
    if "loss" in est.get_params():
        est.set_params(loss="mse")
    return est


def assert_topk(ids, scores, ref, k, tol=1e-4):
    """``(ids, scores)`` is the top-``k`` of each row of ``ref`` (float64, -inf = excluded).

    The reference order is a full sort by (score descending, id ascending). Scores
    are compared with a tolerance (float32 against float64); ids must equal the
    reference's wherever the reference scores are not within ``tol`` of a neighbour.
    """
    n = ref.shape[1]
    for r in range(ref.shape[0]):
        order = np.lexsort((np.arange(n), -ref[r]))[:k]
        expected = ref[r, order]
        valid = np.isfinite(expected)
        got_valid = ids[r] >= 0
        np.testing.assert_array_equal(got_valid[:valid.size], valid)
        assert np.isneginf(scores[r][~got_valid]).all()
        np.testing.assert_allclose(scores[r][got_valid], expected[valid], rtol=tol, atol=tol)
        np.testing.assert_allclose(ref[r, ids[r][got_valid]], expected[valid], rtol=tol,
                                   atol=tol)
        assert len(set(ids[r][got_valid])) == got_valid.sum()
        full = np.sort(ref[r][np.isfinite(ref[r])])[::-1]
        gaps = np.abs(np.diff(full[:valid.sum() + 1]))
        if gaps.size and gaps.min() > tol:
            np.testing.assert_array_equal(ids[r][got_valid], order[valid])


# --------------------------------------------------------------------------- recommend
@FAST
@given(seed=st.integers(0, 2**16), k=st.integers(1, 25),
       n_filter=st.integers(0, 25), n_cand=st.integers(0, 25), exclude=st.booleans())
def test_filter_items_and_items_equal_a_full_sort_reference(seed, k, n_filter, n_cand, exclude):
    X = _ratings(seed % 7)
    rng = np.random.default_rng(seed)
    rec = _fitted_pure(seed % 7)
    rows = X[:6]
    V = rec.item_factors_.astype(np.float64)
    ref = rows.toarray() @ V @ V.T  # PureSVD's scores, x V V^T
    if exclude:
        ref[rows.toarray() != 0] = -np.inf
    filt = rng.choice(25, n_filter, replace=False)
    cand = rng.choice(25, n_cand, replace=False)

    ref_f = ref.copy()
    ref_f[:, filt] = -np.inf
    ids, scores = rec.recommend(rows, k=k, exclude_seen=exclude, filter_items=filt)
    assert_topk(ids, scores, ref_f, k)

    ref_c = np.full_like(ref, -np.inf)
    ref_c[:, cand] = ref[:, cand]
    ids, scores = rec.recommend(rows, k=k, exclude_seen=exclude, items=cand)
    assert_topk(ids, scores, ref_c, k)
    assert set(ids[ids >= 0]) <= set(cand.tolist())

    ref_cf = ref_c.copy()
    ref_cf[:, filt] = -np.inf
    ids, scores = rec.recommend(rows, k=k, exclude_seen=exclude, items=cand, filter_items=filt)
    assert_topk(ids, scores, ref_cf, k)


_PURE = {}


def _fitted_pure(seed):
    if seed not in _PURE:
        _PURE[seed] = SVDRecommender(5, shrinkage=0.0, device="cpu",
                                      random_state=0).fit(_ratings(seed))
    return _PURE[seed]


@pytest.fixture(scope="module")
def funk():
    X = _ratings(1, n_users=60, n_items=30)
    return X, _rating_model(FunkSVD, n_components=4, n_epochs=30, random_state=0,
                            device="cpu").fit(X)


def _funk_reference(rec, users):
    """FunkSVD's score of the fitted users: mu + b_u + b_i + p_u . q_i, float64."""
    P = rec.user_factors_.astype(np.float64)[users]
    Q = rec.item_factors_.astype(np.float64)
    return (P @ Q.T + rec.global_mean_ + rec.user_bias_[users, None].astype(np.float64)
            + rec.item_bias_[None, :].astype(np.float64))


def test_learned_user_vectors_rank_as_predict_ratings(funk):
    X, rec = funk
    users = np.arange(20)
    ids, scores = rec.recommend(X, k=10, users=users, exclude_seen=False)
    ref = _funk_reference(rec, users)
    assert_topk(ids, scores, ref, 10)
    for u in users:
        pred = rec.predict_ratings(np.full(X.shape[1], u), np.arange(X.shape[1]))
        top = np.sort(pred)[::-1][:10]
        # The recommended items carry the 10 highest predicted ratings, in order (ties
        # from clipping to the rating range aside).
        np.testing.assert_allclose(pred[ids[u]], top, atol=1e-5)
        assert (np.diff(pred[ids[u]]) <= 1e-5).all()
    # With the users' own rows excluded, and the rows passed alone.
    ids2, _ = rec.recommend(X[users], k=10, users=users)
    ref2 = ref.copy()
    ref2[X[users].toarray() != 0] = -np.inf
    assert_topk(ids2, rec.recommend(X[users], k=10, users=users)[1], ref2, 10)
    assert not any(X[u, i] for u, row in zip(users, ids2, strict=True) for i in row)
    # X=None: nothing excluded.
    np.testing.assert_array_equal(rec.recommend(None, k=10, users=users)[0], ids)


def test_recommend_users_errors(funk):
    X, rec = funk
    with pytest.raises(ValueError, match="users: index 60 out of range"):
        rec.recommend(X, users=[60])
    with pytest.raises(ValueError, match="X: 3 rows for 2 users"):
        rec.recommend(X[:3], users=[0, 1])
    with pytest.raises(TypeError, match="X=None"):
        rec.recommend(None)
    with pytest.raises(ValueError, match="filter_items: index -1"):
        rec.recommend(X[:1], filter_items=[-1])


# --------------------------------------------------------------------------- neighbours
def _cosine(F):
    F = np.asarray(F, dtype=np.float64)
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    U = F / np.where(norms > 0, norms, 1.0)
    return U @ U.T


@pytest.mark.parametrize("cls", [SVDRecommender, FunkSVD, AsySVD])
def test_similar_items_and_users_are_cosine_neighbours(cls):
    X = _ratings(3)
    kw = {"n_components": 4, "random_state": 0, "device": "cpu"}
    if cls is not SVDRecommender:
        kw["n_epochs"] = 3
    rec = cls(**kw).fit(X)
    items = np.array([0, 5, 24])
    F = rec.item_factors_
    if cls is SVDRecommender:  # the columns of the rank-k approximation, V_k diag(s w)
        F = F * rec.singular_values_ * rec.component_weights_
    ref = _cosine(F)[items]
    ref[np.arange(3), items] = -np.inf  # the item itself is left out
    ids, scores = rec.similar_items(items, k=6)
    assert_topk(ids, scores, ref, 6)
    users = np.array([1, 39])
    ref = _cosine(rec.user_factors_)[users]
    ref[np.arange(2), users] = -np.inf
    ids, scores = rec.similar_users(users, k=5)
    assert_topk(ids, scores, ref, 5)
    # one item as a scalar, batch size irrelevant
    np.testing.assert_array_equal(rec.similar_items(5, k=6, batch_size=1)[0],
                                  rec.similar_items([5], k=6)[0])


def test_similar_items_star_wars_finds_its_sequels(ml100k):
    rec = SVDRecommender(device="cpu", random_state=0).fit(ml100k.X)
    col = ml100k.item_columns(50)  # Star Wars (1977)
    ids, _ = rec.similar_items([col], k=5)
    found = set(ml100k.item_ids[ids[0]].tolist())
    assert 50 not in found
    assert len(found & {172, 181}) >= 2  # The Empire Strikes Back, Return of the Jedi


# --------------------------------------------------------------------------- explain
def _pure_score(rec, x, i):
    V = rec.item_factors_.astype(np.float64)
    return float(x @ V @ V[i])


def _asy_score(rec, x, i):
    """Koren's asymmetric SVD (sksvd.AsySVD's docstring), recomputed in numpy."""
    cols = np.flatnonzero(x)
    r = x[cols]
    n = cols.size
    W = rec.item_weights_.astype(np.float64)
    q = rec.item_factors_.astype(np.float64)[i]
    w = r if rec._profile_weights() == "value" else np.ones(n)  # "auto" resolved
    U = w @ W[-1][cols]
    if W.shape[0] == 1:
        return float(q @ U / np.sqrt(n))
    mu, b = rec.global_mean_, rec.item_bias_.astype(np.float64)
    resid = r - mu - b[cols]
    b_u = resid.sum() / (rec.user_bias_shrinkage + n)
    U = U + (resid - b_u) @ W[0][cols]
    return float(mu + b_u + b[i] + q @ U / np.sqrt(n))


@FAST
@given(seed=st.integers(0, 2**16), model=st.sampled_from(
    ["pure", "pure_scaled", "asy", "asy_nobias", "asy_value", "asy_value_nobias",
     "asy_defaults"]))
def test_explain_contributions_sum_to_the_score(seed, model):
    rng = np.random.default_rng(seed)
    X = _ratings(seed % 5, n_users=20, n_items=12, density=0.4)
    if model.startswith("pure"):
        rec = SVDRecommender(3, shrinkage=0.0, device="cpu", random_state=0,
                             popularity_scaling=0.5 if model == "pure_scaled" else 0.0).fit(X)
    elif model == "asy_defaults":
        rec = AsySVD(3, n_epochs=2, random_state=seed % 3, device="cpu").fit(X)
    else:
        rec = AsySVD(3, n_epochs=2, random_state=seed % 3, device="cpu",
                     use_bias="nobias" not in model,
                     profile_weights="value" if "value" in model else "ones").fit(X)
    x = np.where(rng.random(12) < 0.4, rng.integers(1, 6, 12), 0).astype(np.float64)
    x[rng.integers(0, 12)] = 3.0
    i = int(rng.integers(0, 12))
    e = rec.explain(x[None, :], i)
    assert e.intercept + e.contributions.sum() == pytest.approx(e.score, abs=1e-9)
    assert sorted(e.items.tolist()) == np.flatnonzero(x).tolist()
    assert (np.diff(e.contributions) <= 0).all()
    if model == "pure":
        assert e.score == pytest.approx(_pure_score(rec, x, i), abs=1e-6)
        assert e.intercept == 0.0
        # item j's contribution is x_j (V V^T)_{j,i}
        V = rec.item_factors_.astype(np.float64)
        np.testing.assert_allclose(e.contributions, x[e.items] * (V[e.items] @ V[i]),
                                   atol=1e-9)
    elif model.startswith("asy") and model != "asy_defaults":
        assert e.score == pytest.approx(_asy_score(rec, x, i), abs=1e-6)
    # the model's own (float32) score, unclipped
    got = rec.recommend(x[None, :], k=1, items=[i], exclude_seen=False)[1][0, 0]
    assert float(got) == pytest.approx(e.score, abs=1e-4)


def test_explain_refuses_a_regression_fold_in(funk):
    X, rec = funk
    with pytest.raises(TypeError, match="FunkSVD's fold-in is not a sum over the rated items"):
        rec.explain(X[0], 1)
    pure = SVDRecommender(3, device="cpu").fit(X)
    with pytest.raises(ValueError, match="x_row: expected one row, got 2"):
        pure.explain(X[:2], 1)
    with pytest.raises(ValueError, match="item: index 30 out of range"):
        pure.explain(X[0], 30)
    e = pure.explain(np.zeros((1, 30)), 3)  # no rated item: nothing to explain
    assert e.items.size == 0 and e.score == 0.0


# --------------------------------------------------------------------------- ratings
def test_predicted_ratings_are_clipped_to_the_fitted_range(funk):
    X, rec = funk
    np.testing.assert_array_equal(rec.rating_range_, [X.data.min(), X.data.max()])
    lo, hi = rec.rating_range_
    P = rec.predict(X[:20])
    assert P.min() >= lo and P.max() <= hi
    # predict folds the rows in; recommend's scores are the same scores, unclipped
    ids, scores = rec.recommend(X[:20], k=30, exclude_seen=False)
    folded = np.empty((20, 30))
    folded[np.arange(20)[:, None], ids] = scores
    assert folded.max() > hi or folded.min() < lo  # the data make clipping matter
    np.testing.assert_allclose(P, np.clip(folded, lo, hi), atol=1e-5)
    raw = _funk_reference(rec, np.arange(20))
    users, items = np.repeat(np.arange(20), 30), np.tile(np.arange(30), 20)
    np.testing.assert_allclose(rec.predict_ratings(users, items),
                               np.clip(raw.ravel(), lo, hi), atol=1e-5)
    # PureSVD's scores are not ratings: not clipped.
    pure = SVDRecommender(10, shrinkage=0.0, device="cpu").fit(X)
    V = pure.item_factors_.astype(np.float64)
    np.testing.assert_allclose(pure.predict(X[:5]), X[:5].toarray() @ V @ V.T, atol=1e-4)


# --------------------------------------------------------------------------- pipelines
def test_grid_search_on_a_pipeline_recommends_for_raw_rows():
    X = _ratings(4, n_users=60, n_items=30)
    pipe = Pipeline([("bin", Binarizer(threshold=2.5)),
                     ("rec", SVDRecommender(device="cpu", random_state=0))])
    search = GridSearchCV(pipe, {"rec__n_components": [2, 5]}, cv=KFold(3),
                          scoring=make_topk_scorer("ndcg", k=5)).fit(X)
    rows = X[:7]
    ids, scores = recommend(search, rows, k=5)
    by_hand = search.best_estimator_.named_steps["rec"].recommend(
        Binarizer(threshold=2.5).fit_transform(rows), k=5)
    np.testing.assert_array_equal(ids, by_hand[0])
    np.testing.assert_array_equal(scores, by_hand[1])
    # items seen in the binarized rows are excluded; those under the threshold are not
    seen = Binarizer(threshold=2.5).fit_transform(rows).toarray() != 0
    assert not seen[np.arange(7)[:, None], ids].any()
    # the same through the Pipeline itself, and keywords pass through
    np.testing.assert_array_equal(recommend(search.best_estimator_, rows, k=5)[0], ids)
    ids_f, _ = recommend(search, rows, k=5, filter_items=ids[:, 0])
    assert not np.isin(ids_f, ids[:, 0]).any()
    transform, rec = final_recommender(search)
    assert rec is search.best_estimator_[-1]


def test_pipeline_recommend_errors():
    X = _ratings(4)
    search = GridSearchCV(Pipeline([("rec", SVDRecommender(device="cpu"))]),
                          {"rec__n_components": [2]}, cv=2, refit=False,
                          scoring=make_topk_scorer("ndcg", k=5)).fit(X)
    with pytest.raises(TypeError, match="refit=False"):
        recommend(search, X)
    with pytest.raises(TypeError, match="last step of the Pipeline is Binarizer"):
        recommend(Pipeline([("bin", Binarizer())]).fit(X), X)


# --------------------------------------------------------------------------- scorers
@pytest.mark.parametrize("scoring", ["neg_root_mean_squared_error", "r2",
                                     {"rmse": "neg_root_mean_squared_error"}])
def test_sklearn_scorers_fail_with_a_pointer_to_ours(scoring):
    X = _ratings(5)
    with pytest.raises(ValueError, match="make_rating_scorer"):
        if isinstance(scoring, dict):  # several metrics: cross_validate
            cross_validate(FunkSVD(2, n_epochs=1, device="cpu"), X, scoring=scoring, cv=3)
        else:
            cross_val_score(FunkSVD(2, n_epochs=1, device="cpu"), X, scoring=scoring, cv=3)
    with pytest.raises(ValueError, match="make_topk_scorer"):
        GridSearchCV(SVDRecommender(device="cpu"), {"n_components": [2]}, cv=2,
                     scoring=scoring, refit=not isinstance(scoring, dict)).fit(X)


def test_sksvd_scorers_still_run_under_cross_validation():
    X = _ratings(5, n_users=60)
    s = cross_val_score(SVDRecommender(3, device="cpu"), X, cv=3,
                        scoring=make_topk_scorer("ndcg", k=5))
    assert np.isfinite(s).all()
    s = cross_val_score(_rating_model(FunkSVD, n_components=2, n_epochs=2, device="cpu"), X,
                        cv=3, scoring=make_rating_scorer("rmse"))
    assert np.isfinite(s).all() and (s < 0).all()
    assert np.isfinite(cross_val_score(SVDRecommender(3, device="cpu"), X, cv=3)).all()
