import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import svds
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from sksvd import SVDRecommender
from sksvd._topk import topk_items
from sksvd.metrics import ndcg_at_k


def _ratings(seed=0, m=60, n=40, density=0.2):
    X = sp.random(m, n, density=density, format="csr", random_state=seed)
    X.data = np.ceil(X.data * 5).astype(np.float32)
    return X


@parametrize_with_checks([SVDRecommender(n_components=2, device="cpu", random_state=0)],
                         expected_failed_checks=lambda est: est._xfail_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("algorithm,atol", [("gram", 1e-6), ("randomized", 1e-4), ("full", 1e-6)])
def test_factors_match_numpy_svd(algorithm, atol):
    X = _ratings()
    k = 5
    rec = SVDRecommender(k, shrinkage=0.0, algorithm=algorithm, tol=1e-10, n_iter="auto", dtype="float64",
                         device="cpu", random_state=0).fit(X)
    _, s, Vt = np.linalg.svd(X.toarray())
    np.testing.assert_allclose(rec.singular_values_, s[:k], rtol=atol)
    V = Vt[:k].T
    # the subspace, not the signs: projectors agree (randomized: 20 power iterations at most)
    np.testing.assert_allclose(rec.item_factors_ @ rec.item_factors_.T, V @ V.T, atol=atol)
    assert rec.algorithm_ == algorithm


def test_fold_in_and_predict_formulas_for_new_users():
    X = _ratings()
    rec = SVDRecommender(4, shrinkage=0.0, dtype="float64", device="cpu", random_state=0).fit(X)
    V = rec.item_factors_
    new = _ratings(seed=5, m=7)  # users never seen in fit
    np.testing.assert_allclose(rec.transform(new), new.toarray() @ V, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rec.predict(new), new.toarray() @ V @ V.T, rtol=1e-5, atol=1e-5)
    # fitted users: U_k S_k = X V_k
    np.testing.assert_allclose(rec.user_factors_, X.toarray() @ V, rtol=1e-5, atol=1e-5)
    pr = rec.predict_ratings(np.array([0, 3]), np.array([1, 2]))
    full = X.toarray() @ V @ V.T
    np.testing.assert_allclose(pr, [full[0, 1], full[3, 2]], rtol=1e-5, atol=1e-5)


def test_blog_post_book_example_new_reader():
    # the book recommender of the blog post "SVD for Image Compression and Recommender
    # Systems": a new reader who rated four books gets scores for all others
    X = _ratings(m=80, n=30, density=0.3)
    rec = SVDRecommender(5, shrinkage=0.0, device="cpu", random_state=0).fit(X)
    reader = sp.csr_matrix((np.array([5.0, 4.0, 5.0, 3.0]), (np.zeros(4, int), [1, 4, 7, 9])),
                           shape=(1, 30))
    ids, scores = rec.recommend(reader, k=26)
    assert set(ids[0]) == set(range(30)) - {1, 4, 7, 9}
    assert np.all(np.diff(scores[0]) <= 0)


def test_recommend_excludes_seen_and_is_batch_independent():
    X = _ratings()
    rec = SVDRecommender(3, shrinkage=0.0, device="cpu", random_state=0).fit(X)
    a = rec.recommend(X, k=10)
    b = rec.recommend(X, k=10, batch_size=7)
    np.testing.assert_array_equal(a[0], b[0])
    for u in range(X.shape[0]):
        assert not set(a[0][u]) & set(X[u].indices)
    ids, _ = rec.recommend(X, k=5, exclude_seen=False)
    ref, _ = topk_items(X @ rec.item_factors_, rec.item_factors_, 5)
    np.testing.assert_array_equal(ids, ref)


def test_empty_rows_and_all_seen():
    X = _ratings()
    rec = SVDRecommender(3, shrinkage=0.0, device="cpu", random_state=0).fit(X)
    empty = sp.csr_matrix((2, X.shape[1]), dtype=np.float32)
    assert np.all(rec.transform(empty) == 0)
    ids, scores = rec.recommend(empty, k=3)
    assert ids.shape == (2, 3)
    full = sp.csr_matrix(np.ones((1, X.shape[1])))
    ids, scores = rec.recommend(full, k=3)
    assert (ids == -1).all() and np.isneginf(scores).all()


def test_bad_input_is_named():
    X = _ratings()
    rec = SVDRecommender(3, shrinkage=0.0, device="cpu").fit(X)
    with pytest.raises(ValueError, match="features"):
        rec.transform(sp.random(2, 5, density=0.5, format="csr"))
    with pytest.raises(ValueError, match="k=0"):
        rec.recommend(X, k=0)
    with pytest.raises(ValueError, match=f"k={X.shape[1] + 1}"):
        rec.recommend(X, k=X.shape[1] + 1)
    with pytest.raises(ValueError, match="NaN"):
        rec.recommend(np.full((1, X.shape[1]), np.nan), k=2)
    with pytest.raises(ValueError, match="n_components=100"):
        SVDRecommender(100, shrinkage=0.0).fit(X)
    with pytest.raises(ValueError, match="n_components"):
        SVDRecommender(0, shrinkage=0.0).fit(X)
    with pytest.raises(ValueError, match="users: index 60"):
        rec.predict_ratings([60], [0])


def test_popularity_scaling_lowers_popularity_of_recommendations():
    rng = np.random.default_rng(0)
    pop = rng.zipf(1.6, 80).clip(max=40) / 40.0
    X = sp.csr_matrix((rng.random((200, 80)) < pop * 0.6).astype(np.float32))
    counts = np.asarray(X.sum(0)).ravel()
    mean_pop = []
    for beta in (0.0, 0.5):
        rec = SVDRecommender(8, shrinkage=0.0, popularity_scaling=beta, device="cpu", random_state=0).fit(X)
        ids, _ = rec.recommend(X, k=5)
        mean_pop.append(counts[ids[ids >= 0]].mean())
    assert mean_pop[1] < mean_pop[0]


def test_clone_and_pickle_keep_predictions():
    X = _ratings()
    rec = SVDRecommender(3, shrinkage=0.0, device="cpu", random_state=0).fit(X)
    again = pickle.loads(pickle.dumps(rec))
    np.testing.assert_array_equal(rec.predict(X), again.predict(X))
    assert clone(rec).get_params() == rec.get_params()


def test_matches_scipy_svds_puresvd_on_movielens(ml100k, data_home):
    from sksvd.datasets import load_movielens

    fold = load_movielens("100k", fold="u1", data_home=data_home)
    Xtr, Xte = fold.X_train, fold.X_test
    relevant = sp.csr_matrix(Xte.multiply(Xte >= 4))
    relevant.eliminate_zeros()
    for k in (20, 50):
        rec = SVDRecommender(k, shrinkage=0.0, device="cpu", random_state=0).fit(Xtr)
        ids, _ = rec.recommend(Xtr, k=10)
        _, _, vt = svds(Xtr.astype(np.float64), k=k)
        V = vt.T
        ref, _ = topk_items(Xtr @ V, V, 10, seen=Xtr, dtype=__import__("torch").float64)
        ours, theirs = ndcg_at_k(relevant, ids, 10), ndcg_at_k(relevant, ref, 10)
        assert abs(ours - theirs) <= 1e-3, (k, ours, theirs)
        assert ours > 0.3


@pytest.mark.parametrize("k", [1, 4, 12])
@pytest.mark.parametrize("shrinkage", [0.0, 5.0, 300.0])
def test_spectral_shrinkage_matches_dense_low_rank_ridge(k, shrinkage):
    # Independent reference (numpy): W = V_k diag(s^2 / (s^2 + lambda)) V_k^T from the dense
    # SVD; scores x W for fitted and new rows, and the fitted users' vectors X V_k diag(...).
    X = _ratings(seed=3, m=30, n=20, density=0.3)
    _, s, Vt = np.linalg.svd(X.toarray().astype(np.float64))
    V, s2 = Vt[:k].T, s[:k] ** 2
    weights = s2 / (s2 + shrinkage)
    W = V @ np.diag(weights) @ V.T
    rec = SVDRecommender(k, shrinkage=shrinkage, dtype="float64", device="cpu",
                         random_state=0).fit(X)
    np.testing.assert_allclose(rec.component_weights_, weights, rtol=1e-8)
    np.testing.assert_allclose(rec.predict(X), X.toarray() @ W, atol=1e-5)
    new = _ratings(seed=4, m=5, n=20, density=0.3)
    np.testing.assert_allclose(rec.predict(new), new.toarray() @ W, atol=1e-5)
    np.testing.assert_allclose(np.abs(rec.user_factors_),
                               np.abs(X.toarray() @ V @ np.diag(weights)), atol=1e-6)
    ids, _ = rec.recommend(new, k=3)
    S = new.toarray() @ W
    S[new.toarray() > 0] = -np.inf
    np.testing.assert_array_equal(ids, np.argsort(-S, axis=1, kind="stable")[:, :3])


def test_spectral_shrinkage_minimises_the_low_rank_ridge_objective():
    # W minimises ||X - X W||_F^2 + lambda ||W||_F^2 over rank-k matrices: no random
    # rank-k perturbation of it does better (Jin, Li, Huang and Shen 2021).
    X = _ratings(seed=5, m=25, n=15, density=0.4).toarray().astype(np.float64)
    k, lam = 3, 20.0
    rec = SVDRecommender(k, shrinkage=lam, dtype="float64", device="cpu").fit(X)
    V = rec.item_factors_ * rec.component_weights_
    W = V @ rec.item_factors_.T

    def objective(W):
        return np.sum((X - X @ W) ** 2) + lam * np.sum(W**2)

    best = objective(W)
    rng = np.random.default_rng(0)
    for _ in range(20):
        A, B = rng.normal(size=(15, k)) * 0.05, rng.normal(size=(15, k)) * 0.05
        assert objective((V + A) @ (rec.item_factors_ + B).T) >= best - 1e-9


def test_default_rank_is_capped_and_shrinkage_checked():
    X = _ratings(m=30, n=12)
    rec = SVDRecommender(device="cpu", shrinkage=0.0).fit(X)
    assert rec.item_factors_.shape == (12, 12)  # "auto": min(200, n_users, n_items)
    with pytest.raises(ValueError, match="shrinkage"):
        SVDRecommender(shrinkage=-1.0, device="cpu").fit(X)


@pytest.mark.parametrize("algorithm", ["gram", "randomized"])
def test_concurrent_fits_equal_serial_fits(algorithm):
    # Two threads each fitting their own recommender at once get the serial results
    # and leave torch's thread count as it was.
    import threading

    import torch

    before = torch.get_num_threads()
    rng = np.random.default_rng(0)
    Xs = [sp.random(300, 120, density=0.1, format="csr", random_state=s,
                    data_rvs=lambda n: rng.integers(1, 6, n).astype(float)) for s in (1, 2)]

    def make():
        return SVDRecommender(8, algorithm=algorithm, random_state=0, device="cpu")

    barrier = threading.Barrier(2)
    got = [None, None]

    def work(i):
        barrier.wait()
        got[i] = make().fit(Xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.get_num_threads() == before
    for X, est in zip(Xs, got, strict=True):
        ref = make().fit(X)
        np.testing.assert_array_equal(est.singular_values_, ref.singular_values_)
        np.testing.assert_array_equal(est.item_factors_, ref.item_factors_)


def _dlae_reference(X, lam, c, power=1.0, user_weighting=0.0):
    """Dense numpy: the values to ``power``, the users' weights, the items' penalties and
    the SVD-side Gram matrix ``G`` (weighted) of the DLAE closed form."""
    Xp = np.sign(X) * np.abs(X) ** power
    d = lam + c * np.square(Xp).sum(axis=0)
    w = np.maximum((X != 0).sum(axis=1), 1).astype(float) ** -user_weighting
    Y = Xp * w[:, None]
    # the weights keep the Frobenius norm of the matrix the SVD sees (columns scaled)
    Y *= np.linalg.norm(Xp / np.sqrt(d)) / np.linalg.norm(Y / np.sqrt(d))
    return Xp, d, Y.T @ Y


@pytest.mark.parametrize("lam,c", [(40.0, 2.0), (0.0, 0.5), (300.0, 0.0)])
@pytest.mark.parametrize("power,user_weighting", [(1.0, 0.0), (2.0, 0.25)])
def test_full_rank_item_penalty_is_the_dlae_closed_form(lam, c, power, user_weighting):
    # At full rank the model is DLAE (Steck 2020): W = (G + D)^-1 G with
    # D = diag(lambda + c ||x_j||^2), solved here directly with numpy.
    X = _ratings(seed=7, m=40, n=15, density=0.35)
    Xd = X.toarray().astype(np.float64)
    Xp, d, G = _dlae_reference(Xd, lam, c, power, user_weighting)
    W = np.linalg.solve(G + np.diag(d), G)
    rec = SVDRecommender(15, shrinkage=lam, item_penalty=c, rating_power=power,
                         user_weighting=user_weighting, dtype="float64", device="cpu",
                         random_state=0).fit(X)
    np.testing.assert_allclose(rec.predict(X), Xp @ W, rtol=1e-5, atol=1e-6)
    new = _ratings(seed=8, m=6, n=15, density=0.3)
    Np = np.sign(new.toarray()) * np.abs(new.toarray()) ** power
    np.testing.assert_allclose(rec.predict(new), Np @ W, rtol=1e-5, atol=1e-6)
    # the fitted users' vectors are their rows' fold-in, whatever the SVD's user weights
    np.testing.assert_allclose(rec.user_factors_, rec.transform(X), rtol=1e-5, atol=1e-6)


def test_n_components_none_is_the_full_rank_dlae_of_the_data_at_hand(monkeypatch):
    # More items than users: None keeps all min(n_users, n_items) components, which
    # is DLAE's closed form W = (G + D)^-1 G (G of rank n_users), on any row subset.
    import sksvd.recommenders.puresvd as P

    monkeypatch.setattr(P, "_AUTO_RANK", 3)  # None is not "auto"
    X = _ratings(seed=11, m=14, n=30, density=0.35)
    for rows in (slice(None), slice(0, 9)):
        Xs = X[rows]
        Xp, d, G = _dlae_reference(Xs.toarray().astype(np.float64), 50.0, 1.0, 2.0)
        W = np.linalg.solve(G + np.diag(d), G)
        rec = SVDRecommender(None, shrinkage=50.0, item_penalty=1.0, rating_power=2.0,
                             dtype="float64", device="cpu", random_state=0).fit(Xs)
        assert rec.item_factors_.shape == (30, Xs.shape[0])
        np.testing.assert_allclose(rec.predict(X), (np.sign(X.toarray()) * X.toarray()**2) @ W,
                                   rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="n_components=14"):
        SVDRecommender(14, device="cpu").fit(X[:9])


@pytest.mark.parametrize("k,k0", [(4, 2), (9, 20)])
def test_truncated_dlae_with_low_pass_matches_dense_eigendecomposition(k, k0):
    # Rank k in the scaled space D^-1/2 G D^-1/2 = V diag(e) V^T: weights e / (e + 1)
    # plus alpha on the first k0 components, W = D^-1/2 V_k diag(f) V_k^T D^1/2.
    X = _ratings(seed=9, m=50, n=18, density=0.3)
    Xd = X.toarray().astype(np.float64)
    lam, c, alpha, power, a = 60.0, 1.5, 0.3, 2.0, 0.5
    Xp, d, G = _dlae_reference(Xd, lam, c, power, a)
    e, V = np.linalg.eigh(G / np.sqrt(np.outer(d, d)))
    e, V = e[::-1][:k], V[:, ::-1][:, :k]
    f = e / (e + 1) + alpha * (np.arange(k) < k0)
    W = (V * f / np.sqrt(d)[:, None]) @ (V * np.sqrt(d)[:, None]).T
    rec = SVDRecommender(k, shrinkage=lam, item_penalty=c, low_pass=alpha, low_pass_rank=k0,
                         rating_power=power, user_weighting=a, dtype="float64",
                         device="cpu", random_state=0).fit(X)
    np.testing.assert_allclose(rec.predict(X), Xp @ W, rtol=1e-5, atol=1e-6)
    ids, _ = rec.recommend(X[:5], k=3)
    S = Xp[:5] @ W
    S[Xd[:5] > 0] = -np.inf
    np.testing.assert_array_equal(ids, np.argsort(-S, axis=1, kind="stable")[:, :3])


def test_new_options_off_leave_the_model_unchanged_and_bad_values_are_named():
    X = _ratings(seed=10)
    ref = SVDRecommender(6, shrinkage=30.0, device="cpu", random_state=0).fit(X)
    same = SVDRecommender(6, shrinkage=30.0, item_penalty=0.0, low_pass=0.0, user_weighting=0.0,
                          rating_power=1.0, device="cpu", random_state=0).fit(X)
    np.testing.assert_array_equal(ref.item_factors_, same.item_factors_)
    np.testing.assert_array_equal(ref.item_output_scale_, np.ones(X.shape[1]))
    for name, value in [("item_penalty", -1.0), ("low_pass", -0.1), ("low_pass_rank", 0),
                        ("user_weighting", -0.5), ("rating_power", 0.0)]:
        with pytest.raises(ValueError, match=name):
            SVDRecommender(4, device="cpu", **{name: value}).fit(X)


def test_user_weighting_with_empty_rows_keeps_the_norm_and_folds_in():
    # Users with no interaction (first and last rows) get a zero vector; the others' weighted
    # matrix keeps the Frobenius norm, so the weights rescale to ||X||_F exactly.
    X = _ratings(seed=11, m=30, n=12, density=0.3).tolil()
    X[0, :] = 0
    X[29, :] = 0
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    rec = SVDRecommender(12, shrinkage=10.0, user_weighting=0.5, dtype="float64", device="cpu",
                         random_state=0).fit(X)
    np.testing.assert_allclose(np.square(rec.singular_values_).sum(),
                               np.square(X.toarray().astype(np.float64)).sum(), rtol=1e-6)
    assert not rec.user_factors_[[0, 29]].any()
    np.testing.assert_allclose(rec.user_factors_, rec.transform(X), rtol=1e-5, atol=1e-6)
