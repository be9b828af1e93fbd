"""The fit skeleton of the trained recommenders: the epoch loop, the validation split, growing,
per-call seeds, and TrainedRecommender driven by a toy model and by FunkSVD and AsySVD."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sksvd import AsySVD, FunkSVD
from sksvd._optim import Adam
from sksvd.recommenders._sgd_base import (
    DivergenceError,
    TrainedRecommender,
    call_seed,
    check_growing_interactions,
    grow,
    run_epochs,
    validation_split,
)


# ------------------------------------------------------------------------- epoch loop
def test_run_epochs_raises_on_a_non_finite_loss_naming_the_learning_rate():
    with pytest.raises(DivergenceError, match=r"learning_rate=0\.5: .* epoch 2"):
        run_epochs(lambda e: [1.0, float("nan")][e], 3, learning_rate=0.5)


def test_run_epochs_stops_early_and_restores_the_best_epoch():
    scores = [3.0, 1.0, 2.0, 2.5, 0.5]
    state = {"epoch": None}
    calls = []

    def epoch(e):
        state["epoch"] = e
        return 1.0

    losses, seen = run_epochs(
        epoch, 5, learning_rate=0.1, validate_fn=lambda: scores[state["epoch"]],
        n_iter_no_change=2, callback=lambda e, loss: calls.append(e),
        snapshot_fn=lambda: state["epoch"], restore_fn=lambda s: state.update(epoch=s))
    assert seen == [3.0, 1.0, 2.0, 2.5] and len(losses) == 4 and calls == [0, 1, 2, 3]
    assert state["epoch"] == 1  # the best epoch's parameters are back
    _, up = run_epochs(epoch, 5, learning_rate=0.1, validate_fn=lambda: scores[state["epoch"]],
                       n_iter_no_change=1, higher_is_better=True)
    assert up == [3.0, 1.0]


# --------------------------------------------------------------- splitting and growing
def test_validation_split_partitions_the_entries():
    X = sp.random(30, 20, density=0.3, format="csr", random_state=0)
    a, b = validation_split(X, 0.25, np.random.default_rng(0))
    assert a.shape == b.shape == X.shape
    assert b.nnz == int(np.floor(0.25 * X.nnz)) and a.nnz + b.nnz == X.nnz
    np.testing.assert_array_equal((a + b).toarray(), X.toarray())
    assert (a.multiply(b)).nnz == 0


def test_validation_split_counts_as_train_test_split_interactions():
    from sksvd.model_selection import train_test_split_interactions

    for nnz in (9, 10, 11, 57):
        X = sp.csr_matrix((np.arange(1.0, nnz + 1), (np.arange(nnz) % 7, np.arange(nnz))),
                          shape=(7, nnz))
        for fraction in (0.1, 0.25, 0.3):
            _, b = validation_split(X, fraction, np.random.default_rng(0))
            n_test = int(np.floor(fraction * nnz + 1e-9))
            if n_test:
                _, t = train_test_split_interactions(X, fraction, random_state=0, mode="global")
                assert b.nnz == t.nnz == n_test
            else:
                assert b.nnz == 0


def test_grow_pads_with_empty_rows_and_columns_and_refuses_to_shrink():
    X = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0]]))
    np.testing.assert_array_equal(grow(X, (3, 4)).toarray()[:2, :2], X.toarray())
    assert grow(X, (3, 4)).nnz == 2 and grow(X, (2, 2)) is X
    with pytest.raises(ValueError, match=r"shape=\(1, 2\)"):
        grow(X, (1, 2))


def test_call_seed_differs_per_call_and_repeats():
    assert call_seed(7, 3) == call_seed(7, 3)
    assert len({call_seed(7, c) for c in range(5)}) == 5


def test_growing_input_refuses_fewer_columns():
    est = FunkSVD(n_components=2, n_epochs=1, device="cpu").fit(np.eye(4))
    assert check_growing_interactions(est, np.ones((2, 5))).shape == (2, 5)
    with pytest.raises(ValueError, match="features"):
        check_growing_interactions(est, np.ones((2, 3)))


# ------------------------------------------------------------------------- toy model
class _MeanTrainer:
    """Item scores fitted to the column means of ``X`` by dense Adam on the squared error."""

    def __init__(self, X, start, device, dtype):
        counts = np.maximum(np.bincount(X.indices, minlength=X.shape[1]), 1)
        target = np.bincount(X.indices, X.data, minlength=X.shape[1]) / counts
        self.target = torch.from_numpy(target).to(device=device, dtype=dtype)
        self.w = torch.zeros(X.shape[1], dtype=dtype, device=device)
        if start is not None:
            self.w[:start.shape[0]] = torch.from_numpy(start).to(dtype)
        self.optimizer = Adam({"w": self.w}, 0.1)
        self.validate, self.higher_is_better = None, False

    def epoch(self, epoch):
        err = self.w - self.target
        self.optimizer.step({"w": 2 * err})
        return float(err.square().mean())

    def snapshot(self):
        return self.w.clone()

    def restore(self, state):
        self.w.copy_(state)

    def finish(self):
        pass


class _MeanModel(TrainedRecommender):
    _parameter_constraints = dict(TrainedRecommender._parameter_constraints)

    def __init__(self, n_components=1, *, n_epochs=3, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=5, callback=None, warm_start=False,
                 distributed=False, device="cpu", dtype="float64", random_state=0, verbose=0):
        self._set_params_from(locals())

    _epochs_attribute = "n_steps_"

    def _start_state(self):
        return self.item_factors_[:, 0].copy()

    def _uses_mean(self):
        return False

    def _learning_rate(self):
        return 0.1

    def _make_trainer(self, X, X_val, start, mu, setup):
        return _MeanTrainer(X, start, setup.device, setup.dtype)

    def _store(self, trainer, X, X_val, mu, setup, continued):
        self.item_factors_ = trainer.w.numpy().reshape(-1, 1).copy()
        self.user_factors_ = np.ones((X.shape[0], 1))

    def _fold_in(self, X, device, dtype):
        return torch.ones((X.shape[0], 1), dtype=dtype), None


def test_skeleton_counts_epochs_continues_curves_and_carries_the_optimizer():
    X = sp.csr_matrix(np.array([[1.0, 0.0, 3.0], [2.0, 4.0, 0.0]]))
    whole = _MeanModel(n_epochs=3).fit(X)
    assert whole.n_steps_ == len(whole.loss_curve_) == 3
    assert whole._optimizer_state["t"] == 3
    part = _MeanModel(n_epochs=1).fit(X).partial_fit(X).partial_fit(X)
    assert part.n_steps_ == 3
    np.testing.assert_allclose(part.item_factors_, whole.item_factors_, rtol=1e-12)
    np.testing.assert_allclose(part.loss_curve_, whole.loss_curve_, rtol=1e-12)
    grown = part.partial_fit(sp.csr_matrix(np.array([[0.0, 0.0, 0.0, 5.0]] * 3)))
    assert grown.item_factors_.shape == (4, 1) and grown.n_users_ == 3
    assert not hasattr(grown, "validation_scores_")


def test_skeleton_refuses_empty_input_naming_the_model():
    with pytest.raises(ValueError, match="all 2x3 entries are zero.*_MeanModel"):
        _MeanModel().fit(sp.csr_matrix((2, 3)))


# ----------------------------------------------------------- both models, one skeleton
@pytest.mark.parametrize("cls, count", [(FunkSVD, "n_iter_"), (AsySVD, "n_epochs_")])
def test_both_models_share_the_skeletons_messages_and_counts(cls, count):
    X = sp.random(30, 12, density=0.3, format="csr", random_state=0) * 5
    kw = dict(n_components=2, loss="mse", n_epochs=2, random_state=0, device="cpu")
    with pytest.raises(ValueError, match=f"all 3x4 entries are zero.*{cls.__name__} needs"):
        cls(**kw).fit(sp.csr_matrix((3, 4)))
    with pytest.raises(ValueError, match="validation_fraction=0.01: leaves .* validation"):
        cls(early_stopping=True, validation_fraction=0.01, **kw).fit(X[:2])
    est = cls(warm_start=True, **kw).fit(X).fit(X)
    assert getattr(est, count) == len(est.loss_curve_) == 4
    est.partial_fit(X)
    assert getattr(est, count) == 5


# ------------------------------------------------------------------- batch_size="auto"
@pytest.mark.parametrize("make", [
    lambda **kw: FunkSVD(loss="mse", n_components=3, n_epochs=2, random_state=0, device="cpu",
                         **kw),
    lambda **kw: FunkSVD(loss="mse", solver="adam", learning_rate=0.01, n_components=3,
                         n_epochs=2, random_state=0, device="cpu", **kw),
    lambda **kw: AsySVD(loss="mse", n_components=3, n_epochs=2, random_state=0, device="cpu",
                        **kw),
    lambda **kw: AsySVD(n_components=3, n_epochs=2, random_state=0, device="cpu", **kw),
])
def test_auto_batch_on_cpu_is_the_default_fit(make):
    X = sp.random(300, 40, density=0.2, format="csr", random_state=0) * 5
    a = make()  # batch_size="auto", the default
    b = make(batch_size=type(a)._auto_batch_sizes["cpu"])
    a.fit(X)
    b.fit(X)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    assert a.loss_curve_ == b.loss_curve_


@pytest.mark.parametrize("n_units, expected", [
    (80_000, 4096),            # ml-100k's ratings: 64 steps need batches under the CPU's
    (1_000_000, 15_625),       # 64 steps of n_units // 64
    (17_000_000, 262_144),     # capped at the device's largest batch
])
def test_auto_batch_keeps_64_steps_per_epoch_on_a_device(n_units, expected):
    from sksvd.recommenders._sgd_base import auto_batch_size

    sizes = {"cpu": 4096, "cuda": 262_144}
    assert auto_batch_size(torch.device("cuda"), sizes, n_units) == expected
    assert auto_batch_size(torch.device("cpu"), sizes, n_units) == 4096
    assert auto_batch_size(torch.device("mps"), sizes, n_units) == 4096  # not listed: the CPU's


@pytest.mark.parametrize("cls, n_units, expected", [
    (FunkSVD, 17_000_000, 262_144),   # 64 steps: capped at the device's largest batch
    (FunkSVD, 6_200_000, 96_875),     # 6.2M // 64
    (AsySVD, 70_000, 8192),           # 8 steps: 70,000 // 8 = 8750, capped
    (AsySVD, 943, 128),               # ml-100k's users: the CPU batch
])
def test_each_model_keeps_its_fewest_steps_per_epoch_on_a_device(cls, n_units, expected):
    est = cls(loss="mse", device="cpu")
    batch, rate = est._batch_and_rate(torch.device("cuda"), n_units)
    assert batch == expected
    scaled = cls is AsySVD  # FunkSVD's SGD keeps its step; AsySVD's Adam scales it
    cpu = cls._auto_batch_sizes["cpu"]
    assert rate == pytest.approx(est._learning_rate() * (np.sqrt(batch / cpu) if scaled else 1))


def test_auto_batch_counts_ratings_for_funksvd_and_users_for_asysvd(monkeypatch):
    import sksvd.recommenders._sgd_base as base

    seen = {}
    monkeypatch.setattr(base, "auto_batch_size",
                        lambda device, sizes, n_units, *_: seen.setdefault(sizes["cuda"], n_units)
                        and sizes["cpu"])
    X = sp.random(400, 30, density=0.2, format="csr", random_state=0) * 5
    FunkSVD(loss="mse", n_components=2, n_epochs=1, random_state=0, device="cpu").fit(X)
    AsySVD(n_components=2, n_epochs=1, random_state=0, device="cpu").fit(X)
    assert seen[FunkSVD._auto_batch_sizes["cuda"]] == X.nnz
    assert seen[AsySVD._auto_batch_sizes["cuda"]] == (X.getnnz(axis=1) > 0).sum()


@pytest.mark.parametrize("cls, kw, scaled", [
    (AsySVD, dict(loss="mse"), True),
    (FunkSVD, dict(loss="mse", solver="adam", learning_rate=0.01), True),
    (FunkSVD, dict(loss="mse", solver="sgd"), False),
])
def test_auto_batch_on_a_device_scales_adams_step_by_the_square_root(monkeypatch, cls, kw,
                                                                      scaled):
    import sksvd.recommenders._sgd_base as base

    # The device rule forced on the CPU: "auto" takes the GPU entry.
    monkeypatch.setattr(base, "auto_batch_size", lambda device, sizes, n_units, *_: sizes["cuda"])
    est = cls(n_components=2, n_epochs=2, batch_size="auto", random_state=0, device="cpu", **kw)
    sizes = cls._auto_batch_sizes
    lr = est._learning_rate()
    X = sp.random(400, 30, density=0.2, format="csr", random_state=0) * 5
    batch, rate = est._batch_and_rate(torch.device("cpu"), est._batch_units(X))
    assert batch == sizes["cuda"]
    assert rate == (lr * np.sqrt(sizes["cuda"] / sizes["cpu"]) if scaled else lr)
    explicit = cls(n_components=2, n_epochs=2, random_state=0, device="cpu",
                   **{**kw, "batch_size": batch, "learning_rate": rate})
    np.testing.assert_array_equal(est.fit(X).item_factors_, explicit.fit(X).item_factors_)
