"""TruncatedSVDCompressor against numpy.linalg.svd, scipy svds and sklearn TruncatedSVD."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import svds
from sklearn.datasets import load_sample_image
from sklearn.decomposition import TruncatedSVD
from sklearn.utils.estimator_checks import parametrize_with_checks

from sksvd.compression import TruncatedSVDCompressor


def _decaying(m=300, n=200, seed=0, decay=0.9):
    """A dense matrix with singular values decay**i (known spectrum)."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.normal(size=(m, n)))
    V, _ = np.linalg.qr(rng.normal(size=(n, n)))
    s = decay ** np.arange(n)
    return (U * s) @ V.T, s


def _sparse(m=400, n=300, density=0.05, seed=0):
    return sp.random(m, n, density=density, format="csr", random_state=seed,
                     data_rvs=lambda size: np.random.default_rng(seed).integers(1, 6, size))


def _best_error(s, k):
    """Optimal rank-k Frobenius error from the exact spectrum (Eckart-Young)."""
    return np.sqrt(np.sum(np.asarray(s, dtype=np.float64)[k:] ** 2))


def _error(X, c):
    Xd = X.toarray() if sp.issparse(X) else X
    return np.linalg.norm(Xd - c.inverse_transform(c.transform(X)))


@pytest.fixture(scope="module")
def china():
    img = load_sample_image("china.jpg")
    M = img.reshape(img.shape[0], -1).astype(np.float32)
    s = np.linalg.svd(M.astype(np.float64), compute_uv=False)
    return M, s


@parametrize_with_checks([TruncatedSVDCompressor()])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_full_matches_numpy_svd():
    X, _ = _decaying(60, 40)
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    c = TruncatedSVDCompressor(5, algorithm="full", dtype="float64").fit(X)
    np.testing.assert_allclose(c.singular_values_, s[:5], rtol=1e-10)
    # Same subspace and, up to each vector's sign, the same vectors.
    signs = np.sign(np.sum(c.components_ * Vt[:5], axis=1))
    np.testing.assert_allclose(c.components_, Vt[:5] * signs[:, None], atol=1e-10)
    # svd_flip convention: largest |entry| of each component positive.
    rows = np.arange(5)
    assert np.all(c.components_[rows, np.abs(c.components_).argmax(axis=1)] > 0)
    np.testing.assert_allclose(c.transform(X), X @ Vt[:5].T * signs, atol=1e-10)
    X5 = (U[:, :5] * s[:5]) @ Vt[:5]
    np.testing.assert_allclose(c.inverse_transform(c.transform(X)), X5, atol=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_randomized_within_one_percent_decaying(dtype):
    X, s = _decaying(400, 300, decay=0.97)
    for k in (5, 40):
        c = TruncatedSVDCompressor(k, algorithm="randomized", dtype=dtype, random_state=0).fit(X)
        assert _error(X, c) <= 1.01 * _best_error(s, k)
        np.testing.assert_allclose(c.singular_values_, s[:k], rtol=1e-2)


def test_randomized_within_one_percent_china(china):
    M, s = china
    c = TruncatedSVDCompressor(100, algorithm="randomized", random_state=0).fit(M)
    ratio = _error(M, c) / _best_error(s, 100)
    assert ratio <= 1.01, ratio
    # energy_ratio_ is exact: 1 - energy = relative squared error of the fit.
    total = np.sum(M.astype(np.float64) ** 2)
    np.testing.assert_allclose(1 - c.energy_ratio_[-1], _error(M, c) ** 2 / total, rtol=1e-2)


def test_sparse_matches_scipy_svds_and_stays_sparse():
    X = _sparse()
    k = 10
    u, s, vt = svds(X.astype(np.float64), k=k, random_state=0)
    err_svds = np.linalg.norm(X.toarray() - (u * s) @ vt)
    s = s[::-1]
    # n_iter="auto" targets the Frobenius error; more power iterations also pin the
    # singular values of this flat-spectrum matrix.
    c = TruncatedSVDCompressor(k, algorithm="randomized", dtype="float64", random_state=0).fit(X)
    assert _error(X, c) <= 1.01 * err_svds
    c10 = TruncatedSVDCompressor(k, algorithm="randomized", n_iter=10, dtype="float64",
                                 random_state=0).fit(X)
    np.testing.assert_allclose(c10.singular_values_, s, rtol=1e-2)
    assert c.algorithm_ == "randomized"
    # auto on sparse input is randomized, and a huge sparse matrix is never densified
    # (its dense form would take 8 GB).
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 50_000, 40_000), rng.integers(0, 40_000, 40_000)
    big = sp.csr_matrix((rng.random(40_000), (rows, cols)), shape=(50_000, 40_000))
    cb = TruncatedSVDCompressor(3, random_state=0).fit(big)
    assert cb.algorithm_ == "randomized" and cb.components_.shape == (3, 40_000)


@pytest.mark.parametrize("sparse", [False, True])
def test_explained_variance_ratio_equals_sklearn(sparse):
    X, _ = _decaying(120, 80, decay=0.95)
    X = X + 0.5  # non-zero column means: variance differs from energy
    if sparse:
        X = _sparse(150, 90)
    ref = TruncatedSVD(6, algorithm="arpack", tol=0, random_state=0).fit(X)
    c = TruncatedSVDCompressor(6, algorithm="full", dtype="float64").fit(X)
    np.testing.assert_allclose(c.explained_variance_ratio_, ref.explained_variance_ratio_,
                               rtol=1e-8)
    np.testing.assert_allclose(c.explained_variance_, ref.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(c.singular_values_, ref.singular_values_, rtol=1e-10)
    if not sparse:  # the default float32 randomized path, on a decaying spectrum
        c32 = TruncatedSVDCompressor(6, random_state=0).fit(X)
        np.testing.assert_allclose(c32.explained_variance_ratio_,
                                   ref.explained_variance_ratio_, rtol=2e-3)



@pytest.mark.parametrize("order", ["C", "F"])
def test_column_moments_equal_numpy(order):
    # Blocked float64 moments on shifted rows (a large offset, a block count that does
    # not divide the rows, float32 and float64 input): np.var and the float64 norm.
    from sksvd.compression import _column_moments

    rng = np.random.default_rng(0)
    for dtype, rows in ((np.float32, 37), (np.float64, 300)):
        X = np.asarray(1e3 + rng.standard_normal((rows, 5000)), dtype=dtype, order=order)
        total, var = _column_moments(X)
        X64 = X.astype(np.float64)
        np.testing.assert_allclose(var, np.var(X64, axis=0), rtol=1e-9)
        np.testing.assert_allclose(total, np.sum(X64 * X64), rtol=1e-12)

def test_energy_and_compression_ratio_by_hand():
    X = np.diag([4.0, 2.0, 1.0, 0.0])[:, :3]  # 4 x 3, s = 4, 2, 1; ||X||_F^2 = 21
    c = TruncatedSVDCompressor(2, algorithm="full").fit(X)
    np.testing.assert_allclose(c.energy_ratio_, [16 / 21, 20 / 21], rtol=1e-6)
    assert c.n_components_ == 2
    # raw / compressed: 12 float64 entries (96 bytes) over two float32 factors (2 x 7 x 4 bytes)
    assert c.compression_ratio_ == pytest.approx(96 / 56)
    c8 = TruncatedSVDCompressor(2, algorithm="full", factor_dtype="uint8").fit(X)
    assert c8.compression_ratio_ == pytest.approx(96 / (2 * 7 + 16 * 2))
    big = np.random.default_rng(0).normal(size=(300, 200)).astype(np.float32)
    c = TruncatedSVDCompressor(10, random_state=0).fit(big)
    assert c.compression_ratio_ == pytest.approx(big.nbytes / (10 * 500 * 4)) and \
        c.compression_ratio_ > 1  # > 1: the factors are smaller
    Xs = sp.random(300, 200, density=0.05, format="csr", random_state=0)
    c = TruncatedSVDCompressor(5, random_state=0).fit(Xs)
    sparse_bytes = Xs.data.nbytes + Xs.indices.nbytes + Xs.indptr.nbytes
    assert c.compression_ratio_ == pytest.approx(sparse_bytes / (5 * 500 * 4))


@pytest.mark.parametrize("algorithm", ["full", "randomized"])
def test_float_share_of_energy(algorithm):
    X, s = _decaying(400, 300, decay=0.97)
    share = 0.9
    exact_k = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), share)) + 1
    c = TruncatedSVDCompressor(share, algorithm=algorithm, random_state=0).fit(X)
    assert c.energy_ratio_[-1] >= share * (1 - 1e-6)
    if algorithm == "full":
        assert c.n_components_ == exact_k
    else:  # grown rank: at least the exact one, at most a little more
        assert exact_k <= c.n_components_ <= exact_k + 2
    assert c.energy_ratio_[-2] < share  # the smallest rank reaching the share


def test_share_criteria_on_china(china):
    M, s = china
    k_sv = int(np.searchsorted(np.cumsum(s) / s.sum(), 0.8)) + 1
    k_en = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), 0.8)) + 1
    assert (k_sv, k_en) == (144, 1)  # 80% of sum s_i needs rank 144, 80% of sum s_i^2 rank 1
    c = TruncatedSVDCompressor(0.8, criterion="singular_values").fit(M)
    assert c.n_components_ == 144
    assert TruncatedSVDCompressor(0.8).fit(M).n_components_ == 1


def test_sparse_float_share_grows_rank():
    X = _sparse(300, 200)
    s = np.linalg.svd(X.toarray(), compute_uv=False)
    exact_k = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), 0.5)) + 1
    c = TruncatedSVDCompressor(0.5, random_state=0).fit(X)
    assert c.energy_ratio_[-1] >= 0.5 * (1 - 1e-6)
    assert exact_k <= c.n_components_ <= exact_k + max(2, exact_k // 20)


def test_random_state_reproducible_and_pickle():
    X, _ = _decaying(300, 200)
    a = TruncatedSVDCompressor(10, algorithm="randomized", random_state=3).fit(X)
    b = TruncatedSVDCompressor(10, algorithm="randomized", random_state=3).fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)
    c = pickle.loads(pickle.dumps(a))
    assert isinstance(c.components_, np.ndarray)
    np.testing.assert_array_equal(c.transform(X), a.transform(X))


def test_fit_transform_equals_transform():
    X, _ = _decaying(100, 60)
    c = TruncatedSVDCompressor(4, dtype="float64", algorithm="full")
    Z = c.fit_transform(X)
    np.testing.assert_allclose(Z, c.transform(X), atol=1e-10)


@pytest.mark.parametrize("bad, exc, match", [
    (np.array([[1.0, np.nan], [0.0, 1.0]]), ValueError, "NaN"),
    (np.array([[1.0, np.inf], [0.0, 1.0]]), ValueError, "inf"),
    (np.ones(5), ValueError, "2D"),
    (np.ones((2, 3, 4)), ValueError, "dim"),
    (np.empty((0, 3)), ValueError, "0 sample"),
    (np.array([["a", "b"], ["c", "d"]]), ValueError, "X"),
])
def test_bad_X(bad, exc, match):
    with pytest.raises(exc, match=match):
        TruncatedSVDCompressor(1).fit(bad)


@pytest.mark.parametrize("n_components, match", [
    (0, "n_components.*0"),
    (-3, "n_components.*-3"),
    (4, r"n_components=4.*n_samples=5, n_features=3"),
    (1.0, "n_components.*1.0"),
    (1.5, "n_components.*1.5"),
    (-0.5, "n_components.*-0.5"),
    ("5", "n_components.*'5'"),
])
def test_bad_n_components(n_components, match):
    X = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match=match):
        TruncatedSVDCompressor(n_components).fit(X)


def test_bad_shapes_at_transform():
    X = np.random.default_rng(0).normal(size=(10, 4))
    c = TruncatedSVDCompressor(2).fit(X)
    with pytest.raises(ValueError, match="X has 3 features.*4"):
        c.transform(X[:, :3])
    with pytest.raises(ValueError, match="X has 3 columns.*n_components_=2"):
        c.inverse_transform(np.ones((2, 3)))


def test_callers_array_not_modified():
    X, _ = _decaying(80, 50)
    Xc = X.copy()
    c = TruncatedSVDCompressor(0.9).fit(X)
    c.transform(X)
    np.testing.assert_array_equal(X, Xc)
    S = sp.csr_matrix(([1.0, 2.0, 3.0], ([0, 0, 1], [1, 1, 2])), shape=(3, 4))  # duplicates
    data, indices = S.data.copy(), S.indices.copy()
    TruncatedSVDCompressor(1).fit(S)
    np.testing.assert_array_equal(S.data, data)
    np.testing.assert_array_equal(S.indices, indices)


def test_verbose_progress_bar(capsys):
    X, _ = _decaying(400, 300, decay=0.97)
    c = TruncatedSVDCompressor(0.95, algorithm="randomized", random_state=0, verbose=1).fit(X)
    assert c.energy_ratio_[-1] >= 0.95 * (1 - 1e-6)
    assert "rank" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e16, -1e200])
def test_fit_refuses_nan_inf_and_huge_values_checked_from_the_norm(bad):
    # The dense checks run from ||X||_F^2 (one pass): each bad value is still refused,
    # with a ValueError naming X, and the caller's array is left as it was.
    X = np.arange(12.0).reshape(4, 3)
    X[2, 1] = bad
    before = X.copy()
    with pytest.raises(ValueError, match="X"):
        TruncatedSVDCompressor(1).fit(X)
    np.testing.assert_array_equal(X, before)
    if bad != -1e200:  # float32 input too (1e200 is not a float32)
        with pytest.raises(ValueError, match="X"):
            TruncatedSVDCompressor(1).fit(X.astype(np.float32))


def _exact_attributes(X, k):
    """Exact singular values and explained_variance_ratio_ (numpy's SVD, sklearn's formula)."""
    Xd = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    U, s, _ = np.linalg.svd(Xd, full_matrices=False)
    Z = U[:, :k] * s[:k]
    return s[:k], Z.var(axis=0) / Xd.var(axis=0).sum()


def _worst(est, sv, evr):
    return (np.max(np.abs(est.singular_values_ / sv - 1)),
            np.max(np.abs(est.explained_variance_ratio_ / evr - 1)))


def _matrix(kind):
    rng = np.random.default_rng(1)
    if kind == "china":
        img = load_sample_image("china.jpg")
        return img.reshape(img.shape[0], -1).astype(np.float64)
    if kind == "sparse":
        return sp.random(600, 400, density=0.03, format="csr", random_state=1,
                         data_rvs=lambda size: rng.integers(1, 6, size).astype(float))
    if kind == "flat":  # slowly decaying spectrum: 0.995**i
        return _decaying(500, 300, seed=1, decay=0.995)[0]
    if kind == "steep":  # fast decay
        return _decaying(500, 300, seed=1, decay=0.8)[0]
    if kind == "tall":
        return rng.normal(size=(900, 120)) @ np.diag(np.linspace(5, 0.5, 120)) \
            @ rng.normal(size=(120, 120))
    return (rng.normal(size=(150, 120)) @ np.diag(np.linspace(5, 0.5, 120))
            @ rng.normal(size=(120, 1100)))  # wide


@pytest.mark.parametrize("kind, k", [("china", 20), ("china", 100), ("sparse", 20),
                                     ("flat", 20), ("steep", 20), ("tall", 20), ("wide", 30)])
def test_each_component_at_least_as_accurate_as_sklearn(kind, k):
    """The worst relative error of singular_values_ and explained_variance_ratio_,
    against numpy's exact SVD, is at most scikit-learn's randomized TruncatedSVD's."""
    X = _matrix(kind)
    sv, evr = _exact_attributes(X, k)
    ours = TruncatedSVDCompressor(k, algorithm="randomized", dtype="float64",
                                  random_state=0).fit(X)
    ref = TruncatedSVD(k, random_state=0).fit(X)
    ours_sv, ours_evr = _worst(ours, sv, evr)
    ref_sv, ref_evr = _worst(ref, sv, evr)
    # 1e-9: both at rounding level on steep spectra
    assert ours_sv <= max(ref_sv, 1e-9), (ours_sv, ref_sv)
    assert ours_evr <= max(ref_evr, 1e-9), (ours_evr, ref_evr)
    # the documented rule: every singular value within about tol (2e-2) of the exact one
    assert ours_sv <= 2e-2
    assert np.all(ours.singular_values_ <= sv * (1 + 1e-10))  # Ritz values from below


def test_tol_is_the_per_value_accuracy():
    X = _matrix("china")
    sv, _ = _exact_attributes(X, 50)
    errs, steps = [], []
    for tol in (1e-1, 2e-2, 1e-4):
        c = TruncatedSVDCompressor(50, algorithm="randomized", dtype="float64", tol=tol,
                                   random_state=0).fit(X)
        errs.append(np.max(np.abs(c.singular_values_ / sv - 1)))
        steps.append(c.n_iter_)
    assert errs[1] <= 2e-2 and errs[2] <= 1e-4
    assert steps[0] <= steps[1] <= steps[2] and errs[2] <= errs[0]
    with pytest.raises(ValueError, match="tol"):
        TruncatedSVDCompressor(5, tol=0.0).fit(X)
    with pytest.raises(ValueError, match="factor_dtype"):
        TruncatedSVDCompressor(5, factor_dtype="int4").fit(X)


def _rank_choices(device):
    img = load_sample_image("china.jpg")
    M = img.reshape(img.shape[0], -1).astype(np.float32)
    out = {}
    for share in (0.95, 0.99, 0.999):
        c = TruncatedSVDCompressor(share, algorithm="full", device=device).fit(M)
        out[("energy", share)] = c.n_components_
    for share in (0.5, 0.8):
        c = TruncatedSVDCompressor(share, criterion="singular_values", device=device).fit(M)
        out[("sv", share)] = c.n_components_
    return out


def test_rank_choices_match_a_float64_numpy_spectrum():
    img = load_sample_image("china.jpg")
    s = np.linalg.svd(img.reshape(img.shape[0], -1).astype(np.float64), compute_uv=False)
    energy, nuclear = np.cumsum(s**2) / np.sum(s**2), np.cumsum(s) / np.sum(s)
    got = _rank_choices("cpu")
    for (criterion, share), k in got.items():
        cum = energy if criterion == "energy" else nuclear
        assert cum[k - 1] >= share > (cum[k - 2] if k > 1 else 0), (criterion, share, k)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_cpu_and_gpu_choose_the_same_rank():
    assert _rank_choices("cpu") == _rank_choices("cuda")


def _torch_threads_everywhere():
    """torch's thread count read in this thread and in a new one (OpenMP keeps a copy
    per thread: a count left behind by worker threads shows in new threads)."""
    import threading

    import torch

    fresh = []
    t = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
    t.start()
    t.join()
    return torch.get_num_threads(), fresh[0]


def _fit_in_threads(make, Xs, n_threads=2):
    """Fit ``make()`` on each of ``Xs`` from ``n_threads`` overlapping Python threads."""
    import threading

    barrier = threading.Barrier(n_threads)
    out = [None] * len(Xs)

    def work(i):
        barrier.wait()
        out[i] = make().fit(Xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(Xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pytest.mark.parametrize("algorithm", ["full", "randomized"])
def test_concurrent_fits_restore_torch_threads_and_equal_serial_fits(algorithm):
    # Two threads fitting at once: torch's thread count is as it was afterwards, and
    # each fit equals the same fit made alone (no fit state shared between calls).
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        Xs = [_sparse(400, 300, seed=1), _sparse(400, 300, seed=2)]
        if algorithm == "full":
            Xs = [X.toarray() for X in Xs]

        def make():
            return TruncatedSVDCompressor(0.5, algorithm=algorithm, random_state=0,
                                          device="cpu")

        for _ in range(8):  # overlapping in either order
            got = _fit_in_threads(make, Xs)
            assert _torch_threads_everywhere() == (2, 2)
        for X, est in zip(Xs, got, strict=True):
            ref = make().fit(X)
            assert est.n_components_ == ref.n_components_
            np.testing.assert_array_equal(est.singular_values_, ref.singular_values_)
            np.testing.assert_array_equal(est.components_, ref.components_)
            np.testing.assert_array_equal(est.energy_ratio_, ref.energy_ratio_)
    finally:
        torch.set_num_threads(before)


def test_one_instance_fitted_from_two_threads_ends_as_one_of_the_fits():
    X1, X2 = _sparse(300, 200, seed=1), _sparse(300, 200, seed=2)
    est = TruncatedSVDCompressor(5, random_state=0, device="cpu")
    _fit_in_threads(lambda: est, [X1, X2])
    refs = [TruncatedSVDCompressor(5, random_state=0, device="cpu").fit(X) for X in (X1, X2)]
    assert any(np.array_equal(est.singular_values_, r.singular_values_) for r in refs)
    assert not hasattr(est, "_At") and not hasattr(est, "_total")


def test_overlapping_exact_fits_leave_torch_threads_as_found(monkeypatch):
    # Forced order: fit A enters the exact SVD, fit B starts (finding torch at A's one
    # thread) and enters, A leaves, B leaves last: the count must come back to the original.
    import threading
    import time

    import torch

    import sksvd.compression as C

    real, barrier, a_inside = C.exact_svd, threading.Barrier(2), threading.Event()

    def exact_svd(A, k):
        second = a_inside.is_set()
        a_inside.set()
        out = real(A, k)
        barrier.wait()  # both fits inside
        if second:
            time.sleep(0.1)  # B leaves last
        return out

    monkeypatch.setattr(C, "exact_svd", exact_svd)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        X = _decaying(60, 40)[0]

        def fit(wait):
            if wait:
                a_inside.wait()
            TruncatedSVDCompressor(3, algorithm="full", device="cpu").fit(X)

        threads = [threading.Thread(target=fit, args=(w,)) for w in (False, True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert _torch_threads_everywhere() == (2, 2)
    finally:
        torch.set_num_threads(before)
