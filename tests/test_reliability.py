"""Bad input everywhere, determinism, thread safety and bounded memory.

Property-based: hypothesis feeds the validators and every estimator random
shapes, dtypes, sparse formats, NaN/inf, negative and huge values, empty rows
and columns, non-contiguous and read-only arrays. Each call must return a
correct result or raise ValueError/TypeError naming the argument; it must
never crash, return a NaN model or change the caller's array.
"""

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sksvd import AsySVD, FunkSVD, SVDRecommender, TruncatedSVDCompressor
from sksvd._validation import MAX_ABS_VALUE, check_interactions, check_matrix

FAST = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_SPECIAL = st.sampled_from([0.0, 1.0, -1.0, 5.0, np.nan, np.inf, -np.inf, 1e300, -1e20, 1e-30])


@st.composite
def matrices(draw, min_side=0, max_side=7):
    m = draw(st.integers(min_side, max_side))
    n = draw(st.integers(min_side, max_side))
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.bool_]))
    base = draw(st.lists(st.floats(-10, 10, allow_nan=False), min_size=m * n, max_size=m * n))
    A = np.array(base, dtype=np.float64).reshape(m, n)
    A[np.abs(A) < 4] = 0  # sparse-ish, with empty rows and columns
    if m * n and draw(st.booleans()):
        i, j = draw(st.integers(0, m - 1)), draw(st.integers(0, n - 1))
        A[i, j] = draw(_SPECIAL)
    if not np.issubdtype(dtype, np.floating):
        A = np.nan_to_num(A, nan=0, posinf=0, neginf=0).clip(-1e6, 1e6)
    A = A.astype(dtype)
    layout = draw(st.sampled_from(["dense", "fortran", "strided", "readonly", "csr", "csc",
                                   "coo", "csr_int64", "csr_array"]))
    if layout == "fortran":
        A = np.asfortranarray(A)
    elif layout == "strided":
        A = np.repeat(A, 2, axis=1)[:, ::2]
    elif layout == "readonly":
        A = A.copy()
        A.setflags(write=False)
    elif layout in ("csr", "csc", "coo"):
        A = sp.csr_matrix(A).asformat(layout)
    elif layout == "csr_int64":
        A = sp.csr_matrix(A)
        A.indices = A.indices.astype(np.int64)
        A.indptr = A.indptr.astype(np.int64)
    elif layout == "csr_array":
        A = sp.csr_array(A)
    return A


def _snapshot(A):
    return A.toarray().copy() if sp.issparse(A) else np.array(A, copy=True)


def _finite_bounded(A):
    vals = A.data if sp.issparse(A) else np.asarray(A, dtype=np.float64)
    vals = np.asarray(vals, dtype=np.float64)
    return np.isfinite(vals).all() and (vals.size == 0 or np.abs(vals).max() <= MAX_ABS_VALUE)


def _assert_named(exc):
    msg = str(exc)
    assert any(name in msg for name in ("X", "n_components", "n_features", "n_samples")), msg


@FAST
@given(matrices())
def test_validators_accept_or_name_the_problem(A):
    before = _snapshot(A)
    ok = _finite_bounded(A) and min(A.shape) > 0
    for fn in (check_matrix, check_interactions):
        try:
            out = fn(A)
        except (ValueError, TypeError) as exc:
            assert not ok, f"valid input refused: {exc}"
            _assert_named(exc)
        else:
            assert ok
            dense = out.toarray() if sp.issparse(out) else out
            np.testing.assert_allclose(dense, before.astype(np.float64), rtol=1e-6)
    np.testing.assert_array_equal(_snapshot(A), before)


def _estimators():
    return [
        TruncatedSVDCompressor(n_components=1, device="cpu", random_state=0),
        SVDRecommender(n_components=1, device="cpu", random_state=0),
        FunkSVD(n_components=2, n_epochs=2, device="cpu", random_state=0),
        AsySVD(n_components=2, n_epochs=2, device="cpu", random_state=0),
        # The rating models: another solver (SGD) and AsySVD's biased model.
        FunkSVD(n_components=2, n_epochs=2, loss="mse", device="cpu", random_state=0),
        AsySVD(n_components=2, n_epochs=2, loss="mse", device="cpu", random_state=0),
    ]


@FAST
@given(matrices(max_side=6), st.integers(0, 5))
def test_estimators_fit_or_raise_clearly_and_never_return_nan(A, which):
    est = _estimators()[which]
    before = _snapshot(A)
    try:
        est.fit(A)
    except (ValueError, TypeError) as exc:
        _assert_named_or_parameter(exc)
    else:
        assert _finite_bounded(A) and min(A.shape) > 0
        for name, value in vars(est).items():
            if name.endswith("_") and isinstance(value, np.ndarray) and value.dtype.kind == "f":
                assert np.isfinite(value).all(), f"{type(est).__name__}.{name} has NaN/inf"
        out = est.transform(A)
        assert np.isfinite(out).all()
    np.testing.assert_array_equal(_snapshot(A), before)


def _assert_named_or_parameter(exc):
    msg = str(exc)
    names = ("X", "n_components", "n_features", "n_samples", "learning_rate", "ratings",
             "rating", "interactions")
    assert any(n in msg for n in names), msg


def test_recommend_is_thread_safe(ml100k):
    X = ml100k.X
    rec = SVDRecommender(20, device="cpu", random_state=0).fit(X)
    ref = rec.recommend(X, k=10)
    results = [None] * 4

    def work(i):
        results[i] = rec.recommend(X, k=10)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ids, scores in results:
        np.testing.assert_array_equal(ids, ref[0])
        np.testing.assert_array_equal(scores, ref[1])


@pytest.mark.parametrize("cls, loss", [(SVDRecommender, None), (FunkSVD, None), (AsySVD, None),
                                       (FunkSVD, "mse"), (AsySVD, "mse")])
def test_same_seed_bitwise_equal_and_recommend_batch_independent(cls, loss, ml100k):
    X = ml100k.X[:300]
    kw = dict(n_components=8, device="cpu", random_state=0)
    if cls is not SVDRecommender:
        kw["n_epochs"] = 2
    if loss is not None:
        kw["loss"] = loss
    a, b = cls(**kw).fit(X), cls(**kw).fit(X)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    ids1, _ = a.recommend(X, k=10, batch_size=1)
    ids2, _ = a.recommend(X, k=10, batch_size=1000)
    np.testing.assert_array_equal(ids1, ids2)


def test_bounded_memory_on_a_huge_sparse_matrix():
    # 200,000 x 200,000 with 400,000 interactions: a dense users x items matrix would
    # need 160 GB; fit + transform + recommend must stay far below (measured in a child).
    code = textwrap.dedent("""
        import resource, numpy as np, scipy.sparse as sp
        from sksvd import SVDRecommender
        rng = np.random.default_rng(0)
        n, nnz = 200_000, 400_000
        X = sp.csr_matrix((np.ones(nnz, np.float32), (rng.integers(0, n, nnz),
                           rng.integers(0, n, nnz))), shape=(n, n))
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rec = SVDRecommender(8, algorithm="randomized", device="cpu", random_state=0).fit(X)
        rec.transform(X[:1000])
        ids, _ = rec.recommend(X[:2000], k=10)
        assert ids.shape == (2000, 10)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((peak - base) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    extra_mb = float(out.stdout.strip().splitlines()[-1])
    assert extra_mb < 1024, f"peak memory grew by {extra_mb:.0f} MB"
