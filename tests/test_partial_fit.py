"""Growing models: partial_fit and warm_start of FunkSVD and AsySVD.

References: a full fit on all the data (the issue's acceptance line), one full-batch SGD step
written out in numpy from the fitted parameters, the numpy ridge fold-in of new users, and the
estimators' own fold-in (transform) for AsySVD's user vectors.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from sksvd import AsySVD, FunkSVD

# ----------------------------------------------------------------------------- helpers


def time_split(ratings, holdout=0.1, first=0.8, seed=0):
    """MovieLens by time: a random ``holdout`` share of the ratings is the test set; the rest,
    sorted by timestamp, is cut into its first ``first`` share and the later rest.

    Users and items are numbered by their first appearance in time, so the early part is a
    smaller matrix (its users and items only) and the later part adds rows and columns.
    Test ratings of users or items absent from the training ratings are dropped.
    """
    rng = np.random.default_rng(seed)
    test = rng.random(len(ratings)) < holdout
    train = ratings[~test].sort_values("timestamp", kind="stable")
    user_code = {u: i for i, u in enumerate(train["user"].drop_duplicates())}
    item_code = {j: i for i, j in enumerate(train["item"].drop_duplicates())}
    users = train["user"].map(user_code).to_numpy()
    items = train["item"].map(item_code).to_numpy()
    values = train["rating"].to_numpy(np.float32)
    shape = (len(user_code), len(item_code))
    cut = int(first * len(train))
    early = sp.csr_matrix((values[:cut], (users[:cut], items[:cut])))  # its own, smaller shape
    late = sp.csr_matrix((values[cut:], (users[cut:], items[cut:])), shape=shape)
    full = sp.csr_matrix((values, (users, items)), shape=shape)
    held = ratings[test]
    held = held[held["user"].isin(user_code) & held["item"].isin(item_code)]
    pairs = (held["user"].map(user_code).to_numpy(), held["item"].map(item_code).to_numpy(),
             held["rating"].to_numpy(np.float64))
    return early, late, full, pairs


def rmse(est, pairs):
    users, items, truth = pairs
    return float(np.sqrt(np.mean((est.predict_ratings(users, items) - truth) ** 2)))


def rows_of(X, rows):
    """``X`` with only the given rows kept (same shape)."""
    keep = np.zeros(X.shape[0], dtype=bool)
    keep[rows] = True
    return sp.diags(keep.astype(X.dtype)) @ X


@pytest.fixture(scope="module")
def split(ml100k):
    return time_split(ml100k.ratings)


def fitted_state(est):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(est).items()}


def assert_same_state(est, state):
    assert set(vars(est)) == set(state)
    for k, v in state.items():
        now = getattr(est, k)
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(now, v, err_msg=k)
        else:
            assert now == v, k


# ------------------------------------------------- the acceptance line: MovieLens by time
def test_split_has_new_users_and_items(split):
    early, late, full, pairs = split
    assert late.shape[0] > early.shape[0] + 100  # 192 users join in the last 20%
    assert late.shape[1] > early.shape[1] + 20   # and 69 items
    assert late.nnz > 15_000 and len(pairs[0]) > 9_000


def test_funksvd_partial_fit_on_later_ratings_ends_near_full_fit(split):
    # FunkSVD fitted on the first 80% of the training ratings by time, then ONE partial_fit
    # pass over the later 20% only, against a fit on all of them. RMSE on the random 10% of
    # MovieLens 100K held out before the split (9,000+ ratings). Measured: full 0.9135,
    # partial 0.9189 (seeds 0-4: gaps 0.0054-0.0075).
    early, late, full, pairs = split
    params = dict(random_state=0, device="cpu")
    reference = rmse(FunkSVD(loss="mse", **params).fit(full), pairs)
    est = FunkSVD(loss="mse", **params).fit(early)
    est.partial_fit(late)
    assert est.user_factors_.shape[0] == est.n_users_ == late.shape[0]
    assert est.item_factors_.shape[0] == est.n_items_ == est.n_features_in_ == late.shape[1]
    assert est.n_iter_ == 13 and len(est.loss_curve_) == 13
    got = rmse(est, pairs)
    assert abs(got - reference) < 0.01, (got, reference)
    # well below the mean-rating baseline (about 1.12 here)
    assert got < np.sqrt(np.mean((pairs[2] - full.data.mean()) ** 2)) - 0.15


def test_asysvd_partial_fit_on_later_users_ends_near_full_fit(split):
    # AsySVD users are their profiles, so partial_fit gets the rows of the users active in the
    # later 20% (their ratings so far); one pass, RMSE on the same held-out 10%. A short fit
    # (5 epochs at a larger step) keeps the test fast. Measured: full 0.9244, partial 0.9279
    # (seed 1: 0.9188, 0.9212).
    early, late, full, pairs = split
    params = dict(n_epochs=5, learning_rate=0.02, random_state=0, device="cpu")
    reference = rmse(AsySVD(loss="mse", **params).fit(full), pairs)
    est = AsySVD(loss="mse", **params).fit(early)
    active = np.flatnonzero(np.diff(late.indptr))
    est.partial_fit(rows_of(full, active))
    assert est.user_factors_.shape == (late.shape[0], 64)
    assert est.item_factors_.shape[0] == est.n_features_in_ == late.shape[1]
    got = rmse(est, pairs)
    assert abs(got - reference) < 0.01, (got, reference)


# ------------------------------------------------------- exact semantics on small data
def test_funksvd_partial_fit_is_one_sgd_step_from_the_fitted_parameters():
    # With batch_size >= nnz an epoch is one full-batch step, computed here in numpy from the
    # fitted parameters: old users and items continue from their values, new users start at
    # their ridge fold-in on the fitted items, new items as at fit (init_std=0: zeros).
    rng = np.random.default_rng(0)
    X0 = sp.random(30, 12, density=0.4, format="csr", random_state=1,
                   data_rvs=lambda n: rng.integers(1, 6, n).astype(float))
    est = FunkSVD(loss="mse", n_components=3, n_epochs=30, init_std=0.1, random_state=0,
                  device="cpu", dtype="float64").fit(X0)
    k, lr, reg = 3, 0.01, 0.06
    P, Q = est.user_factors_.copy(), est.item_factors_.copy()
    bu, bi, mu = est.user_bias_.copy(), est.item_bias_.copy(), est.global_mean_

    X1 = sp.random(34, 14, density=0.3, format="csr", random_state=2,
                   data_rvs=lambda n: rng.integers(1, 6, n).astype(float))
    X1[32] = 0  # a new user without a rating
    X1.eliminate_zeros()
    # new users: ridge on the fitted items, penalty n_u * reg on [p, b]
    P1, bu1 = np.zeros((34, k)), np.zeros(34)
    P1[:30], bu1[:30] = P, bu
    for u in range(30, 34):
        cols, vals = X1[u].indices, X1[u].data
        cols, vals = cols[cols < 12], vals[cols < 12]
        if cols.size:
            F = np.column_stack([Q[cols], np.ones(cols.size)])
            z = np.linalg.solve(F.T @ F + cols.size * reg * np.eye(k + 1),
                                F.T @ (vals - mu - bi[cols]))
            P1[u], bu1[u] = z[:k], z[k]
    Q1, bi1 = np.zeros((14, k)), np.zeros(14)
    Q1[:12], bi1[:12] = Q, bi
    # one step, every per-rating update computed from the parameters before it
    coo = X1.tocoo()
    u, i, r = coo.row, coo.col, coo.data
    e = r - mu - bu1[u] - bi1[i] - np.einsum("ij,ij->i", P1[u], Q1[i])
    dP, dQ = np.zeros_like(P1), np.zeros_like(Q1)
    dbu, dbi = np.zeros_like(bu1), np.zeros_like(bi1)
    np.add.at(dP, u, lr * (e[:, None] * Q1[i] - reg * P1[u]))
    np.add.at(dQ, i, lr * (e[:, None] * P1[u] - reg * Q1[i]))
    np.add.at(dbu, u, lr * (e - reg * bu1[u]))
    np.add.at(dbi, i, lr * (e - reg * bi1[i]))

    est.set_params(learning_rate=lr, batch_size=10_000, init_std=0.0)
    est.partial_fit(X1)
    np.testing.assert_allclose(est.user_factors_, P1 + dP, atol=1e-10)
    np.testing.assert_allclose(est.item_factors_, Q1 + dQ, atol=1e-10)
    np.testing.assert_allclose(est.user_bias_, bu1 + dbu, atol=1e-10)
    np.testing.assert_allclose(est.item_bias_, bi1 + dbi, atol=1e-10)
    assert est.global_mean_ == mu  # kept from the first fit
    assert (est.n_users_, est.n_items_, est.n_features_in_, est.n_iter_) == (34, 14, 14, 31)
    np.testing.assert_array_equal(est.user_factors_[32], 0.0)


def test_funksvd_partial_fit_unfitted_is_one_epoch_of_fit_and_warm_start_continues():
    X = sp.random(40, 15, density=0.3, format="csr", random_state=0) * 5
    a = FunkSVD(loss="mse", n_components=4, random_state=0, device="cpu").partial_fit(X)
    b = FunkSVD(loss="mse", n_components=4, n_epochs=1, random_state=0, device="cpu").fit(X)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    # warm_start: fit continues from the factors (one epoch == one partial_fit pass)
    a.partial_fit(X)
    b.set_params(warm_start=True).fit(X)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert a.n_iter_ == b.n_iter_ == 2
    # without warm_start, fit starts afresh
    c = FunkSVD(loss="mse", n_components=4, n_epochs=1, random_state=0, device="cpu").fit(X)
    b.set_params(warm_start=False).fit(X)
    np.testing.assert_array_equal(b.item_factors_, c.item_factors_)
    assert b.n_iter_ == 1


def test_asysvd_partial_fit_keeps_what_x_does_not_touch():
    X0 = sp.random(40, 20, density=0.3, format="csr", random_state=0) * 5
    est = AsySVD(loss="mse", n_components=4, n_epochs=3, random_state=0, device="cpu").fit(X0)
    before = fitted_state(est)
    # rows 0-9 and two new users (40, 41) rate items 0-9 and a new item 20; items 10-19 and
    # users 10-39 do not appear
    X1 = sp.random(42, 21, density=0.4, format="csr", random_state=1) * 5
    X1 = rows_of(X1, list(range(10)) + [40, 41])
    X1 = X1 @ sp.diags(np.r_[np.ones(10), np.zeros(10), 1.0])
    X1.eliminate_zeros()
    est.partial_fit(X1)
    assert est.item_factors_.shape == (21, 4) and est.user_factors_.shape == (42, 4)
    assert np.abs(est.item_factors_[20]).sum() > 0  # the new item, rated in X1
    assert not np.array_equal(est.item_factors_[:10], before["item_factors_"][:10])
    # users without a row in X keep their vectors; the others are their fold-in of X's rows
    np.testing.assert_array_equal(est.user_factors_[10:40], before["user_factors_"][10:40])
    rows = list(range(10)) + [40, 41]
    np.testing.assert_allclose(est.user_factors_[rows], est.transform(X1[rows]), atol=1e-6)
    assert est.global_mean_ == before["global_mean_"] and est.n_epochs_ == 4


@pytest.mark.parametrize("make", [
    lambda n: AsySVD(loss="mse", n_components=4, n_epochs=n, batch_size=1000, random_state=0,
                     device="cpu", dtype="float64"),
    lambda n: FunkSVD(loss="mse", n_components=4, n_epochs=n, solver="adam", learning_rate=0.01,
                      batch_size=10**6, random_state=0, device="cpu", dtype="float64"),
])
def test_partial_fit_continues_adam_where_fit_stopped(make):
    # One batch per epoch: fit for 1 epoch then 2 partial_fit passes on the same ratings is
    # the same computation as fit for 3 epochs (parameters, Adam's moments and step count
    # carry over); without the carried moments it is not.
    X = sp.random(60, 25, density=0.3, format="csr", random_state=0) * 5
    a = make(3).fit(X)
    b = make(1).fit(X).partial_fit(X).partial_fit(X)
    np.testing.assert_allclose(b.item_factors_, a.item_factors_, atol=1e-12)
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-12)
    c = make(1).fit(X)
    del c._optimizer_state
    c.partial_fit(X).partial_fit(X)
    assert np.abs(c.item_factors_ - a.item_factors_).max() > 1e-3


@pytest.mark.parametrize("cls", [FunkSVD, AsySVD])
def test_warm_start_fit_grows_with_new_users_and_items(cls):
    X0 = sp.random(30, 10, density=0.4, format="csr", random_state=0) * 5
    X1 = sp.random(35, 12, density=0.4, format="csr", random_state=1) * 5
    est = cls(n_components=3, n_epochs=2, warm_start=True, random_state=0, device="cpu")
    est.fit(X0)
    first_loss = list(est.loss_curve_)
    est.fit(X1)
    assert est.user_factors_.shape == (35, 3) and est.item_factors_.shape == (12, 3)
    assert (est.n_users_, est.n_items_, est.n_features_in_) == (35, 12, 12)
    assert est.loss_curve_[:2] == first_loss and len(est.loss_curve_) == 4
    assert np.isfinite(est.predict(X1)).all()


# ---------------------------------------------------------------- errors and interrupts
@pytest.mark.parametrize("make", [
    lambda: FunkSVD(loss="mse", n_components=3, n_epochs=2, random_state=0, device="cpu"),
    lambda: AsySVD(loss="mse", n_components=3, n_epochs=2, random_state=0, device="cpu"),
])
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_partial_fit_leaves_the_estimator_unchanged(make, exc):
    X0 = sp.random(30, 10, density=0.4, format="csr", random_state=0) * 5
    X1 = sp.random(35, 12, density=0.4, format="csr", random_state=1) * 5  # it would grow
    est = make().fit(X0)
    state = fitted_state(est)
    arrays = {k: v for k, v in vars(est).items() if isinstance(v, np.ndarray)}

    def stop(epoch, loss):
        raise exc("stop")

    est.set_params(callback=stop)
    state["callback"] = stop
    with pytest.raises(exc):
        est.partial_fit(X1)
    assert_same_state(est, state)
    for k, v in arrays.items():  # the very arrays, not modified in place
        assert getattr(est, k) is v
    est.set_params(callback=None)
    est.partial_fit(X1)  # and it still works afterwards
    assert est.n_items_ == 12


@pytest.mark.parametrize("cls", [FunkSVD, AsySVD])
def test_partial_fit_refuses_fewer_items_and_a_changed_rank(cls):
    X = sp.random(20, 8, density=0.5, format="csr", random_state=0) * 5
    est = cls(n_components=2, n_epochs=1, random_state=0, device="cpu").fit(X)
    with pytest.raises(ValueError, match="X has 7 features, but .* is expecting 8 features"):
        est.partial_fit(X[:, :7])
    est.set_params(n_components=3)
    with pytest.raises(ValueError, match="n_components=3: the fitted model has 2"):
        est.partial_fit(X)
    est.set_params(n_components=2, warm_start=True)
    est.fit(X[:5])  # fewer users is fine: the others keep their rows
    assert est.user_factors_.shape[0] == 20
