"""Past one machine with Dask: the SVD family fitted block by block."""

import numpy as np
import pytest
import scipy.sparse as sp

da = pytest.importorskip("dask.array")

from sksvd import SVDRecommender  # noqa: E402
from sksvd._dask import dask_randomized_svd, dask_squared_norm  # noqa: E402
from sksvd.linalg import truncated_svd  # noqa: E402


def _decaying(m=1200, n=200, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (U * np.exp(-np.arange(n) / 12.0)) @ V.T


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def test_local_cluster_matches_in_memory_singular_values(client):
    A = _decaying()
    X = da.from_array(A, chunks=(300, 200))
    U, S, Vt = dask_randomized_svd(X, 10, random_state=0, tol=1e-6)
    _, S_mem, _ = truncated_svd(A, 10, algorithm="randomized", random_state=0, tol=1e-6)
    np.testing.assert_allclose(S, S_mem, rtol=1e-4)
    np.testing.assert_allclose(S, np.linalg.svd(A, compute_uv=False)[:10], rtol=1e-4)
    np.testing.assert_allclose((U * S) @ Vt, A @ Vt.T @ Vt, atol=1e-4)


def test_sparse_chunks_and_recommender(client):
    rng = np.random.default_rng(0)
    low = rng.random((400, 5)) @ rng.random((5, 60))
    dense = np.where(rng.random((400, 60)) < 0.3, np.round(low), 0).astype(np.float32)
    Xs = sp.csr_matrix(dense)
    X = da.from_array(dense, chunks=(100, 60)).map_blocks(sp.csr_matrix)
    assert dask_squared_norm(X) == pytest.approx(float((dense.astype(np.float64) ** 2).sum()))
    a = SVDRecommender(4, device="cpu", random_state=0, tol=1e-8).fit(X)
    b = SVDRecommender(4, device="cpu", random_state=0).fit(Xs)
    np.testing.assert_allclose(a.singular_values_, b.singular_values_, rtol=1e-4)
    np.testing.assert_allclose(a.item_factors_ @ a.item_factors_.T,
                               b.item_factors_ @ b.item_factors_.T, atol=1e-3)
    ids_a, _ = a.recommend(Xs[:50], k=5)
    ids_b, _ = b.recommend(Xs[:50], k=5)
    assert (ids_a == ids_b).mean() > 0.95


@pytest.mark.parametrize("sparse_chunks", [True, False])
def test_dask_fit_with_every_option_matches_in_memory_fit(sparse_chunks):
    # rating_power, the DLAE item penalty, user weights and the low-pass lift, computed
    # block by block, give the in-memory model (exact solver there) up to the solver's rounding.
    rng = np.random.default_rng(3)
    dense = (rng.random((400, 60)) < 0.15) * rng.integers(1, 6, (400, 60)).astype(np.float32)
    X = da.from_array(dense, chunks=(90, 60))
    if sparse_chunks:
        X = X.map_blocks(sp.csr_matrix)
    params = dict(shrinkage=50.0, item_penalty=1.5, low_pass=0.3, low_pass_rank=3,
                  user_weighting=0.4, rating_power=2.0, device="cpu", random_state=0)
    a = SVDRecommender(6, tol=1e-10, n_iter=30, **params).fit(X)
    b = SVDRecommender(6, **params).fit(sp.csr_matrix(dense))
    np.testing.assert_allclose(a.singular_values_, b.singular_values_, rtol=1e-4)
    np.testing.assert_allclose(a.item_scale_, b.item_scale_, rtol=1e-6)
    np.testing.assert_allclose(a.predict(dense[:40]), b.predict(dense[:40]), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.abs(a.user_factors_), np.abs(b.user_factors_), atol=1e-3)


def test_dask_input_errors():
    X = da.from_array(np.array([[1.0, np.nan], [0.0, 1.0]]), chunks=(1, 2))
    with pytest.raises(ValueError, match="NaN"):
        SVDRecommender(1, device="cpu").fit(X)
    with pytest.raises(ValueError, match="n_components=5"):
        SVDRecommender(5, device="cpu").fit(da.ones((4, 3), chunks=(2, 3)))
