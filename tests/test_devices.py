"""Every recommender on every device this machine has (the ``device`` fixture).

The same checks run on the CPU and, where torch sees one, on a CUDA GPU:
fitted arrays come back as numpy, a fit repeats under its ``random_state``,
``recommend`` and ``predict`` agree with numpy on the fitted factors, the
default ``batch_size="auto"`` trains as well as the CPU batch, and the models
reach the same quality as on the CPU (the same computation in another order of
floating-point operations, and, for the random starts, another generator).
"""

import numpy as np
import pytest
import scipy.sparse as sp

from sksvd import AsySVD, FunkSVD, SVDRecommender
from sksvd.metrics import ndcg_at_k, rmse


def _ratings(n_users=120, n_items=60, rank=3, density=0.25, seed=0):
    """A low-rank rating matrix in 1..5 with a random mask, and its held-out part."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n_users, rank)) @ rng.normal(size=(rank, n_items))
    R = np.clip(np.round(3 + scores), 1, 5)
    mask = rng.random((n_users, n_items)) < density
    held = (rng.random((n_users, n_items)) < 0.2) & mask
    X = sp.csr_matrix(np.where(mask & ~held, R, 0.0))
    X_test = sp.csr_matrix(np.where(held, R, 0.0))
    return X, X_test


MODELS = {
    "SVDRecommender()": lambda device: SVDRecommender(5, shrinkage=10.0, device=device),
    "FunkSVD()": lambda device: FunkSVD(4, n_epochs=6, random_state=0, device=device),
    "FunkSVD(loss='mse')": lambda device: FunkSVD(4, loss="mse", n_epochs=20, random_state=0,
                                                  device=device),
    "AsySVD()": lambda device: AsySVD(4, n_epochs=3, random_state=0, device=device),
    "AsySVD(loss='mse')": lambda device: AsySVD(4, loss="mse", n_epochs=10, random_state=0,
                                                device=device),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_fit_repeats_and_recommend_matches_numpy(device, name):
    X, _ = _ratings()
    a, b = MODELS[name](device).fit(X), MODELS[name](device).fit(X)
    for attr in ("user_factors_", "item_factors_"):
        assert isinstance(getattr(a, attr), np.ndarray)
        assert np.isfinite(getattr(a, attr)).all()
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    scores = np.asarray(a.predict(X), dtype=np.float64)
    assert scores.shape == X.shape
    ids, top = a.recommend(X, k=5)
    bounds = a._rating_bounds()
    if bounds is not None:
        # predict clips a rating model's scores to the rating range; recommend ranks by the
        # model's unclipped scores, an order that clipping (monotone) keeps.
        top = np.clip(top, *bounds)
    masked = np.where(X.toarray() != 0, -np.inf, scores)
    # The listed scores are the scores of the listed items, in descending order, and no
    # unlisted unseen item scores higher than the 5th.
    np.testing.assert_allclose(np.take_along_axis(masked, ids, 1), top, rtol=1e-5, atol=1e-5)
    assert (np.diff(top, axis=1) <= 1e-6).all()
    kth = np.sort(masked, axis=1)[:, -5]
    np.testing.assert_allclose(top[:, -1], kth, rtol=1e-5, atol=1e-5)
    assert not (X[np.arange(X.shape[0])[:, None], ids].toarray() != 0).any()


@pytest.mark.parametrize("name", list(MODELS))
def test_quality_on_the_device_is_the_cpus(device, name):
    X, X_test = _ratings()
    here, cpu = MODELS[name](device).fit(X), MODELS[name]("cpu").fit(X)
    test = X_test.tocoo()
    if "mse" in name:
        r_dev = rmse(test.data, here.predict_ratings(test.row, test.col))
        r_cpu = rmse(test.data, cpu.predict_ratings(test.row, test.col))
        assert r_dev == pytest.approx(r_cpu, abs=0.03)
    else:
        Y = (X_test >= 4).astype(np.float32).tocsr()
        users = np.flatnonzero(Y.getnnz(axis=1))
        n_dev = ndcg_at_k(Y[users], here.recommend(X[users], k=10)[0], k=10)
        n_cpu = ndcg_at_k(Y[users], cpu.recommend(X[users], k=10)[0], k=10)
        assert n_dev == pytest.approx(n_cpu, abs=0.03)
        most_popular = np.argsort(-X.getnnz(axis=0), kind="stable")
        seen = X[users].toarray() != 0
        pop_ids = np.array([[i for i in most_popular if not s[i]][:10] for s in seen])
        assert n_dev > ndcg_at_k(Y[users], pop_ids, k=10)


@pytest.mark.parametrize("cls", [FunkSVD, AsySVD])
def test_auto_batch_is_the_cpu_batch_on_small_data(device, cls):
    # 64 steps per epoch need batches below the CPU's on this matrix: "auto" takes the CPU
    # batch on every device, and so the fit of an explicit CPU batch.
    import torch

    X, _ = _ratings()
    est = cls(4, loss="mse", n_epochs=2, random_state=0, device=device)
    batch, rate = est._batch_and_rate(torch.device(device), est._batch_units(X))
    assert batch == cls._auto_batch_sizes["cpu"] and rate == est._learning_rate()
    explicit = cls(4, loss="mse", n_epochs=2, random_state=0, device=device, batch_size=batch)
    np.testing.assert_array_equal(est.fit(X).item_factors_, explicit.fit(X).item_factors_)
