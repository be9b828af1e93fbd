import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds
from sklearn.datasets import load_sample_image

from sksvd._backend import to_torch
from sksvd.linalg import (
    choose_algorithm,
    exact_svd,
    randomized_svd,
    singular_values,
    squared_frobenius_norm,
    svd_flip,
    truncated_svd,
)


def _decaying(m=300, n=200, seed=0):
    rng = np.random.default_rng(seed)
    r = min(m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n, r)))
    s = np.exp(-np.arange(r) / 15.0)
    return (U * s) @ V.T


def _rank_k_error(A, U, S, Vt):
    return np.linalg.norm(A - (U * S) @ Vt)


def _optimal_error(A, k):
    s = np.linalg.svd(A, compute_uv=False)
    return np.sqrt((s[k:] ** 2).sum())


def test_exact_svd_matches_numpy():
    A = _decaying()
    U, S, Vt = exact_svd(torch.from_numpy(A), 10)
    s = np.linalg.svd(A, compute_uv=False)
    np.testing.assert_allclose(S.numpy(), s[:10], rtol=1e-10)
    np.testing.assert_allclose(_rank_k_error(A, U.numpy(), S.numpy(), Vt.numpy()),
                               _optimal_error(A, 10), rtol=1e-8)


@pytest.mark.parametrize("shape", [(300, 200), (200, 300)])
def test_randomized_within_one_percent_of_optimum_decaying(shape):
    A = _decaying(*shape)
    for k in (5, 20, 50):
        U, S, Vt = truncated_svd(A, k, algorithm="randomized", random_state=0, dtype="float64")
        assert _rank_k_error(A, U, S, Vt) <= 1.01 * _optimal_error(A, k)
        # n_iter="auto" targets the Frobenius error; singular values agree to 1e-3 of s_1.
        s = np.linalg.svd(A, compute_uv=False)
        np.testing.assert_allclose(S, s[:k], atol=1e-3 * s[0])


def test_randomized_within_one_percent_on_real_image():
    img = load_sample_image("china.jpg").astype(np.float64)
    M = img.reshape(img.shape[0], -1)
    for k in (10, 100):
        U, S, Vt = truncated_svd(M, k, algorithm="randomized", random_state=0)
        err = _rank_k_error(M, U.astype(np.float64), S.astype(np.float64), Vt.astype(np.float64))
        assert err <= 1.01 * _optimal_error(M, k)


def test_randomized_sparse_matches_svds():
    X = sp.random(400, 150, density=0.05, format="csr", random_state=0, dtype=np.float64)
    X = X + sp.csr_matrix(np.outer(np.arange(400) % 7, np.arange(150) % 5) * 0.1)
    X = sp.csr_matrix(X)
    _, s, _ = svds(X, k=8)
    U, S, Vt = truncated_svd(X, 8, algorithm="randomized", random_state=0, dtype="float64",
                             tol=1e-8, n_oversamples=20)
    np.testing.assert_allclose(S, np.sort(s)[::-1], rtol=1e-4)
    # the sparse input was not densified into the kernel
    A = to_torch(X, dtype=torch.float64)
    assert A.layout == torch.sparse_csr


def test_randomized_is_seeded_and_sign_deterministic():
    A = _decaying()
    a = truncated_svd(A, 5, algorithm="randomized", random_state=3)
    b = truncated_svd(A, 5, algorithm="randomized", random_state=3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    Vt = a[2]
    idx = np.abs(Vt).argmax(axis=1)
    assert (Vt[np.arange(5), idx] > 0).all()


def test_svd_flip_as_sklearn():
    from sklearn.utils.extmath import svd_flip as sk_flip

    rng = np.random.default_rng(0)
    U, Vt = rng.standard_normal((6, 3)), rng.standard_normal((3, 5))
    u1, v1 = svd_flip(torch.from_numpy(U), torch.from_numpy(Vt))
    u2, v2 = sk_flip(U.copy(), Vt.copy(), u_based_decision=False)
    np.testing.assert_allclose(u1.numpy(), u2)
    np.testing.assert_allclose(v1.numpy(), v2)


def test_auto_n_iter_uses_few_passes_on_fast_decay_and_fixed_n_iter_counts():
    A = torch.from_numpy(_decaying())
    *_, info = randomized_svd(A, 10, generator=torch.Generator().manual_seed(0),
                              return_info=True)
    assert 1 <= info["n_iter"] <= 6 and info["passes"] == 2 * info["n_iter"] + 2
    *_, info = randomized_svd(A, 10, n_iter=3, generator=torch.Generator().manual_seed(0),
                              return_info=True)
    assert info == {"n_iter": 3, "passes": 8}


def test_norms_and_spectrum():
    X = sp.random(30, 20, density=0.3, format="csr", random_state=0)
    assert squared_frobenius_norm(to_torch(X, dtype=torch.float64)) == pytest.approx(
        (X.toarray() ** 2).sum())
    np.testing.assert_allclose(singular_values(to_torch(X, dtype=torch.float64)).numpy(),
                               np.linalg.svd(X.toarray(), compute_uv=False), rtol=1e-10)


def test_choose_algorithm_and_bad_arguments():
    assert choose_algorithm((100, 100), 5) == "full"
    assert choose_algorithm((1000, 1000), 5) == "randomized"
    assert choose_algorithm((100, 100), 5, sparse=True) == "randomized"
    with pytest.raises(ValueError, match="algorithm='qr'"):
        truncated_svd(np.eye(3), 1, algorithm="qr")
    with pytest.raises(ValueError, match="n_components=4"):
        randomized_svd(torch.eye(3), 4)
