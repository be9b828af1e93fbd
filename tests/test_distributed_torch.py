"""Data-parallel FunkSVD and AsySVD on torch.distributed (a 2-process gloo group on 127.0.0.1).

References: the single-process fit of the same estimator (same effective batch) on MovieLens
100K u1.base, scored on u1.test; with one full batch per epoch the two runs are the same
computation and must agree to float32 rounding. The sharding is checked against numpy.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sksvd import AsySVD, FunkSVD, SVDRecommender
from sksvd.distributed import (
    allreduce_,
    allreduce_values,
    fit_parallel,
    get_rank,
    get_world_size,
    is_distributed,
    owned_rows,
    resolve_distributed,
    shard_rows,
    spawn,
)

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch built without torch.distributed")

# The rating models (loss="mse": data-parallel training runs the mini-batch solvers).
# Mini-batch runs: FunkSVD's rating defaults; AsySVD with fewer epochs and larger batches to
# keep the test short. Full-batch runs: one step per epoch (batch_size above nnz / n_users).
ESTIMATORS = {
    "funk": FunkSVD(loss="mse", random_state=0, device="cpu"),
    "asy": AsySVD(loss="mse", n_epochs=6, batch_size=256, learning_rate=0.01, random_state=0,
                  device="cpu"),
    "funk_full": FunkSVD(loss="mse", n_epochs=5, batch_size=100_000, learning_rate=5e-4,
                         random_state=0, device="cpu"),
    "asy_full": AsySVD(loss="mse", n_epochs=3, batch_size=1_000, random_state=0, device="cpu"),
}


def _rank_work(X_train, X_early, X_late):
    """What each rank runs: the fits, a growing fit, and a refused shape mismatch."""
    out = {"rank": get_rank(), "world_size": get_world_size()}
    for name, est in ESTIMATORS.items():
        out[name] = est.fit(X_train)  # distributed="auto": the group is initialised
    grown = FunkSVD(loss="mse", n_epochs=3, batch_size=100_000, learning_rate=5e-4,
                    random_state=0, device="cpu").fit(X_early)
    out["grown"] = grown.partial_fit(X_late)
    bad = X_train[:-1] if get_rank() == 1 else X_train
    try:
        FunkSVD(loss="mse", n_epochs=1, device="cpu").fit(bad)
    except ValueError as exc:
        out["mismatch"] = str(exc)
    try:
        FunkSVD(loss="mse", solver="als", device="cpu").fit(X_train)
    except ValueError as exc:
        out["als"] = str(exc)
    import sksvd.recommenders._sgd_base as base

    rule, seen = base.auto_batch_size, []
    base.auto_batch_size = lambda device, sizes, n_units, *rest: seen.append(n_units) or rule(
        device, sizes, n_units, *rest)
    try:
        FunkSVD(loss="mse", n_epochs=1, device="cpu").fit(X_train)
        AsySVD(loss="mse", n_epochs=1, device="cpu").fit(X_train)
    finally:
        base.auto_batch_size = rule
    out["batch_units"] = sorted(set(seen))
    return out


@pytest.fixture(scope="module")
def u1(data_home):
    from sksvd.datasets import load_movielens

    return load_movielens("100k", fold="u1", data_home=data_home)


@pytest.fixture(scope="module")
def early_late(u1):
    """The first 800 users x 1500 items, then the rest of u1.base (new users and items)."""
    coo = u1.X_train.tocoo()
    early = (coo.row < 800) & (coo.col < 1500)
    first = sp.csr_matrix((coo.data[early], (coo.row[early], coo.col[early])), shape=(800, 1500))
    rest = sp.csr_matrix((coo.data[~early], (coo.row[~early], coo.col[~early])),
                         shape=coo.shape)
    return first, rest


@pytest.fixture(scope="module")
def ranks(u1, early_late):
    # One group for the whole module: starting two torch processes takes seconds.
    return spawn(_rank_work, nprocs=2, args=(u1.X_train, *early_late), threads=1)


def rmse_on(est, X_test):
    coo = X_test.tocoo()
    return float(np.sqrt(np.mean((est.predict_ratings(coo.row, coo.col) - coo.data) ** 2)))


# ------------------------------------------------------------------ the 2-process group
def test_every_rank_holds_the_same_fitted_model(ranks):
    assert [r["rank"] for r in ranks] == [0, 1] and ranks[0]["world_size"] == 2
    for name in (*ESTIMATORS, "grown"):
        a, b = ranks[0][name], ranks[1][name]
        for attr in ("item_factors_", "user_factors_", "item_bias_", "user_bias_"):
            np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=name)
        assert a.distributed == "auto"


@pytest.mark.parametrize("name", ["funk", "asy"])
def test_minibatch_rmse_matches_single_process(ranks, u1, name):
    # Same hyper-parameters and effective batch; the ranks draw their own ratings, so only
    # the quality can agree: u1.test RMSE within 0.005 (measured: 0.0000-0.0005).
    single = ESTIMATORS[name].fit(u1.X_train)
    got, want = rmse_on(ranks[0][name], u1.X_test), rmse_on(single, u1.X_test)
    assert abs(got - want) < 0.005, (got, want)
    assert got < 1.0


@pytest.mark.parametrize("name", ["funk_full", "asy_full"])
def test_full_batch_fit_equals_single_process(ranks, u1, name):
    # One step per epoch: the summed per-rank updates are the single-process update, up to
    # float32 summation order (tolerance 1e-4 on factors of size ~0.1-1).
    single = ESTIMATORS[name].fit(u1.X_train)
    dist = ranks[0][name]
    for attr in ("item_factors_", "user_factors_", "item_bias_", "user_bias_"):
        np.testing.assert_allclose(getattr(dist, attr), getattr(single, attr), atol=1e-4,
                                   err_msg=attr)
    np.testing.assert_allclose(dist.loss_curve_, single.loss_curve_, rtol=1e-5)


def test_growing_partial_fit_equals_single_process(ranks, early_late):
    early, late = early_late
    single = FunkSVD(loss="mse", n_epochs=3, batch_size=100_000, learning_rate=5e-4,
                     random_state=0, device="cpu").fit(early).partial_fit(late)
    dist = ranks[0]["grown"]
    assert dist.user_factors_.shape == single.user_factors_.shape == (late.shape[0], 32)
    np.testing.assert_allclose(dist.user_factors_, single.user_factors_, atol=1e-4)
    np.testing.assert_allclose(dist.item_factors_, single.item_factors_, atol=1e-4)


def test_ranks_with_different_shapes_or_als_are_refused_on_every_rank(ranks):
    for r in ranks:
        assert "every rank passes the same shape" in r["mismatch"]
        assert r["als"].startswith("solver='als': data-parallel training")


# ------------------------------------------------------------------- without a group
def test_auto_batch_counts_the_whole_matrix_on_every_rank(ranks, u1):
    # "auto" sizes the batch from the entries (FunkSVD) or rows (AsySVD) of all the ranks'
    # shards together, so that every rank takes the same batch and the same number of steps.
    X = u1.X_train
    for out in ranks:
        assert out["batch_units"] == sorted({X.nnz, int((X.getnnz(axis=1) > 0).sum())})


def test_shard_rows_partitions_the_rows():
    X = sp.random(11, 7, density=0.4, format="csr", random_state=0)
    shards = [shard_rows(X, rank=r, world_size=3) for r in range(3)]
    np.testing.assert_array_equal(sum(s.toarray() for s in shards), X.toarray())
    for r, s in enumerate(shards):
        dense = X.toarray()
        dense[np.arange(11) % 3 != r] = 0
        np.testing.assert_array_equal(s.toarray(), dense)
        assert s.shape == X.shape and s.nnz == np.count_nonzero(dense)
    X.data[:] = -1  # shards share no memory with X
    assert (shards[0].data >= 0).all()
    np.testing.assert_array_equal(owned_rows(5, 1, 2), [False, True, False, True, False])
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        owned_rows(5, 2, 2)
    with pytest.raises(TypeError, match="X: expected a scipy sparse matrix"):
        shard_rows(np.eye(3), 0, 1)


def test_no_group_means_single_process():
    assert not is_distributed() and get_rank() == 0 and get_world_size() == 1
    t = torch.arange(3.0)
    assert allreduce_(t) is t and t.tolist() == [0.0, 1.0, 2.0]
    np.testing.assert_array_equal(allreduce_values([1, 2]), [1.0, 2.0])
    assert resolve_distributed("auto") is False and resolve_distributed(False) is False
    with pytest.raises(ValueError, match="op='prod'"):
        allreduce_(t, op="prod")


def test_distributed_true_without_a_group_says_how_to_start_one(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="distributed=True: no torch.distributed process "
                                         "group.*torchrun"):
        FunkSVD(distributed=True, device="cpu").fit(sp.eye(3, format="csr"))
    with pytest.raises(ValueError, match="distributed='yes'"):
        resolve_distributed("yes")
    with pytest.raises(TypeError, match="SVDRecommender has no distributed training"):
        fit_parallel(SVDRecommender(2), sp.eye(3, format="csr"))
