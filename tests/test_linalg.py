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
    # default block: a third of k + n_oversamples = 20, rounded up to 8, at least 16
    assert (info["n_iter"], info["passes"], info["block_size"]) == (3, 8, 16)


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


def _flat(m=400, n=150, seed=1):
    """A sparse matrix with a flat spectrum (random sparse: the slow case for power iterations)."""
    return sp.random(m, n, density=0.05, format="csr", random_state=seed, dtype=np.float32)


@pytest.mark.parametrize("kind", ["numpy", "scipy", "torch"])
def test_block_krylov_inputs_agree_with_numpy(kind):
    X = _flat()
    A = {"numpy": X.toarray(), "scipy": X, "torch": to_torch(X)}[kind]
    U, S, Vt = randomized_svd(A, 8, n_iter=6, generator=torch.Generator().manual_seed(0))
    s_ref = np.linalg.svd(X.toarray().astype(np.float64), compute_uv=False)[:8]
    np.testing.assert_allclose(S.numpy(), s_ref, rtol=1e-3)
    # orthonormal factors, consistent with A: U^T A V = diag(S)
    np.testing.assert_allclose(U.numpy().T @ U.numpy(), np.eye(8), atol=1e-4)
    np.testing.assert_allclose(U.numpy().T @ (X @ Vt.numpy().T), np.diag(S.numpy()),
                               atol=1e-3 * float(S[0]))


def test_block_krylov_flat_spectrum_beats_power_iterations_at_equal_passes():
    # Same number of passes (8) as sklearn's randomized_svd with n_iter=3:
    # the Krylov space is wider, so its rank-k error is at most the power method's.
    from sklearn.utils.extmath import randomized_svd as sk_rsvd

    X = _flat(800, 300)
    k, opt = 20, _optimal_error(X.toarray().astype(np.float64), 20)
    U, S, Vt = randomized_svd(X, k, n_iter=3, block_size=30,
                              generator=torch.Generator().manual_seed(0))
    ours = _rank_k_error(X.toarray(), U.numpy(), S.numpy(), Vt.numpy()) / opt
    u, s, vt = sk_rsvd(X, k, n_oversamples=10, n_iter=3, random_state=0)
    theirs = _rank_k_error(X.toarray(), u, s, vt) / opt
    assert ours <= theirs and ours < 1.01


def test_block_krylov_exhausted_space_and_rank_deficient_input():
    # Rank 5: the Krylov space (4 blocks of 16) is far larger than the range.
    rng = np.random.default_rng(0)
    A = (rng.standard_normal((90, 5)) @ rng.standard_normal((5, 70))).astype(np.float32)
    U, S, Vt = randomized_svd(A, 8, n_iter=3, block_size=16,
                              generator=torch.Generator().manual_seed(0))
    s_ref = np.linalg.svd(A.astype(np.float64), compute_uv=False)[:8]
    assert torch.isfinite(U).all() and torch.isfinite(Vt).all()
    np.testing.assert_allclose(S.numpy()[:5], s_ref[:5], rtol=1e-4)
    assert float(S[5:].abs().max()) < 1e-3 * float(S[0])
    np.testing.assert_allclose((U[:, :5] * S[:5]) @ Vt[:5], A, atol=1e-3 * float(S[0]))


def test_block_krylov_skips_the_long_factor_when_not_asked():
    X = _flat(500, 100)  # tall: the items (columns) are the short side
    gen = torch.Generator
    U, S, Vt, info = randomized_svd(X, 10, n_iter=2, compute_u=False,
                                    generator=gen().manual_seed(0), return_info=True)
    U2, S2, Vt2, info2 = randomized_svd(X, 10, n_iter=2, generator=gen().manual_seed(0),
                                        return_info=True)
    assert U is None and info["passes"] == info2["passes"] - 1
    np.testing.assert_array_equal(Vt.numpy(), Vt2.numpy())
    np.testing.assert_array_equal(S.numpy(), S2.numpy())


def test_block_krylov_leaves_the_input_alone():
    X = _flat()
    A = np.asfortranarray(X.toarray())
    A.setflags(write=False)
    before = A.copy(), X.data.copy(), X.indices.copy()
    randomized_svd(A, 5, generator=torch.Generator().manual_seed(0))
    randomized_svd(X, 5, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(A, before[0])
    np.testing.assert_array_equal(X.data, before[1])
    np.testing.assert_array_equal(X.indices, before[2])


def test_threaded_sparse_products_equal_scipy():
    from sksvd.linalg import _Operator

    X = _flat(300, 120)
    for A in (X, X.T.tocsr()):  # tall (F = A.T) and wide (F = A)
        op = _Operator(A)
        op._split_rows(3, min_nnz=1)
        assert len(op.chunks) == 3
        F = (A.T if op.transposed else A).toarray().astype(np.float64)
        x = np.random.default_rng(0).standard_normal((F.shape[1], 4)).astype(np.float32)
        y = np.random.default_rng(1).standard_normal((F.shape[0], 4)).astype(np.float32)
        np.testing.assert_allclose(op.matmat(torch.from_numpy(x)).numpy(), F @ x,
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(op.rmatmat(torch.from_numpy(y)).numpy(), F.T @ y,
                                   rtol=1e-5, atol=1e-5)


def _check_products(op, F, dtype, rng, x_order):
    """``op.matmat`` and ``op.rmatmat`` against ``F`` (the operator's matrix, float64
    dense) on random blocks: ``x`` in ``x_order``, ``y`` column-major."""
    x = np.asarray(rng.standard_normal((F.shape[1], 5)).astype(dtype), order=x_order)
    y = np.asfortranarray(rng.standard_normal((F.shape[0], 5)).astype(dtype))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(op.matmat(torch.from_numpy(x)).numpy(), F @ x,
                               rtol=tol, atol=tol)
    np.testing.assert_allclose(op.rmatmat(torch.from_numpy(y)).numpy(), F.T @ y,
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_host_products_equal_numpy(order, dtype):
    # One product of a dense host matrix runs through torch (the row-major operand),
    # the other through numpy; both orders, both shapes, read-only input.
    from sksvd.linalg import _Operator

    rng = np.random.default_rng(0)
    for shape in ((60, 150), (150, 60)):
        A = np.asarray(rng.standard_normal(shape), dtype=dtype, order=order)
        A.flags.writeable = False
        op = _Operator(A)
        assert op.rowmajor is not None
        F = (A.T if op.transposed else A).astype(np.float64)
        _check_products(op, F, dtype, rng, x_order="C")



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_orthonormalize_tall_blocks_cholesky_and_householder(dtype):
    # Blocks of at least _CHOLESKY_QR_ROWS rows take Cholesky QR when well conditioned:
    # orthonormal, orthogonal to the basis, the same span as Householder's; a block
    # exhausted by the basis and a rank-deficient one (Cholesky QR refused, Householder
    # QR taken) still come back orthonormal and orthogonal to the basis.
    from sksvd.linalg import _CHOLESKY_QR_ROWS, _cholesky_qr, _orthonormalize

    g = torch.Generator().manual_seed(0)
    s, b = _CHOLESKY_QR_ROWS + 100, 12
    eps = torch.finfo(dtype).eps
    basis = torch.linalg.qr(torch.randn(s, 30, generator=g, dtype=dtype)).Q
    fresh = torch.randn(s, b, generator=g, dtype=dtype)
    fresh[:, 1] = fresh[:, 0] + 1e-3 * fresh[:, 1]  # cond ~ 1e3: Cholesky QR taken
    assert _cholesky_qr(fresh) is not None
    exhausted = basis[:, :b] @ torch.randn(b, b, generator=g, dtype=dtype) \
        + 1e-9 * torch.randn(s, b, generator=g, dtype=dtype)
    deficient = fresh.clone()
    deficient[:, 2] = deficient[:, 3]  # rank-deficient: Cholesky QR refused
    assert _cholesky_qr(deficient) is None
    for Y in (fresh, exhausted, deficient):
        Q = _orthonormalize(Y, basis)
        assert float((Q.T @ Q - torch.eye(b, dtype=dtype)).abs().max()) < 100 * eps
        assert float((basis.T @ Q).abs().max()) < 100 * eps
    H = torch.linalg.qr(fresh - basis @ (basis.T @ fresh)).Q
    Q = _orthonormalize(fresh, basis)
    sv = torch.linalg.svdvals(H.T @ Q)  # cosines of the principal angles: all 1
    assert float((sv - 1).abs().max()) < 1e4 * eps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unsplit_csr_products_equal_numpy(dtype):
    # On one thread A @ X of a CSR matrix runs through torch on the same arrays (X as it
    # comes, column-major views included), A.T @ X through scipy; both shapes.
    from sksvd.linalg import _Operator

    rng = np.random.default_rng(0)
    for X in (_flat(300, 120), _flat(300, 120).T.tocsr()):
        A = X.astype(dtype)
        op = _Operator(A, threads=1)
        assert op.chunks is None and op.rowmajor is not None
        F = (A.T if op.transposed else A).toarray().astype(np.float64)
        _check_products(op, F, dtype, rng, x_order="F")


def test_row_signs_follow_the_first_largest_entry():
    # The CPU rule (largest and smallest entries, ties by the first largest |entry|)
    # and the rule other devices take (first largest |entry| of every row) agree with
    # sklearn's svd_flip convention, ties and zero rows included.
    from sksvd.linalg import _first_max_signs, _row_signs

    def reference(V):
        idx = np.argmax(np.abs(V), axis=1)
        signs = np.sign(V[np.arange(V.shape[0]), idx])
        signs[signs == 0] = 1
        return signs

    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        V = torch.randint(-2, 3, (int(torch.randint(1, 40, (1,), generator=g)), 7),
                          generator=g).float()
        ref = reference(V.numpy())
        np.testing.assert_array_equal(_row_signs(V).numpy(), ref)
        device_rule = _first_max_signs(V, torch.arange(V.shape[0]), 16)
        device_rule[device_rule == 0] = 1
        np.testing.assert_array_equal(device_rule.numpy(), ref)
    V = torch.randn(100, 300, generator=g, dtype=torch.float64)
    np.testing.assert_array_equal(_row_signs(V).numpy(), reference(V.numpy()))

@pytest.mark.parametrize("sparse", [False, True])
def test_torch_path_of_the_kernel_equals_the_numpy_path(monkeypatch, sparse):
    # The path GPUs take (torch products, torch.sparse.mm with a transposed CSR), run on the CPU.
    import sksvd._backend as B
    import sksvd.linalg as L

    X = _flat(300, 120)
    A = to_torch(X if sparse else X.toarray())
    ref = randomized_svd(A, 6, n_iter=3, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(B, "_HOST_KERNELS_ON_CPU", False)
    op = L._Operator(A)
    assert op.backend == "torch"
    got = randomized_svd(A, 6, n_iter=3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(got[1].numpy(), ref[1].numpy(), rtol=1e-4)
    np.testing.assert_allclose(np.abs(got[0].numpy().T @ ref[0].numpy()), np.eye(6), atol=1e-3)
    np.testing.assert_allclose(np.abs(got[2].numpy() @ ref[2].numpy().T), np.eye(6), atol=1e-3)


def test_kernel_refuses_non_float_numpy_input():
    with pytest.raises(TypeError, match="dtype int64"):
        randomized_svd(np.ones((5, 4), dtype=np.int64), 2)


def test_concurrent_calls_restore_torch_thread_count_and_agree():
    # The CPU kernel runs its small steps with torch on one thread; calls overlapping
    # from several Python threads must leave torch's thread count as they found it and
    # give each call the result it gives alone. (BLAS's count is set per call; with
    # OpenBLAS 0.3.31 a main thread's count can read 1 after overlapping calls from
    # other threads: a known OpenBLAS behaviour, not checked here.)
    from concurrent.futures import ThreadPoolExecutor

    before = torch.get_num_threads()
    X = _flat(400, 150)
    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(lambda s: randomized_svd(
            X, 5, generator=torch.Generator().manual_seed(s))[1], range(8)))
    assert torch.get_num_threads() == before
    ref = randomized_svd(X, 5, generator=torch.Generator().manual_seed(3))[1]
    np.testing.assert_array_equal(out[3].numpy(), ref.numpy())


def test_squared_frobenius_norm_of_numpy_and_scipy_input():
    X = _flat()
    ref = float((X.toarray().astype(np.float64) ** 2).sum())
    assert squared_frobenius_norm(X) == pytest.approx(ref, rel=1e-12)
    assert squared_frobenius_norm(X.toarray()) == pytest.approx(ref, rel=1e-12)


def test_gram_path_equals_the_pass_path_and_numpy(monkeypatch):
    # A short dense matrix takes the Gram path (F F^T formed once); forcing the
    # pass-over-A path must give the same subspace, both within 1% of numpy's optimum.
    import sksvd.linalg as L

    for A in (_decaying(120, 900).astype(np.float32), _decaying(900, 120).astype(np.float32)):
        opt = _optimal_error(A.astype(np.float64), 15)
        U, S, Vt, info = randomized_svd(A, 15, generator=torch.Generator().manual_seed(0),
                                        return_info=True)
        assert info["gram"] and info["passes"] == 2  # the Gram matrix, the long factor
        monkeypatch.setattr(L, "_GRAM_STEPS", 0)
        U2, S2, Vt2, info2 = randomized_svd(A, 15, generator=torch.Generator().manual_seed(0),
                                           return_info=True)
        monkeypatch.undo()
        assert not info2["gram"] and info2["passes"] > 2
        for u, s, vt in ((U, S, Vt), (U2, S2, Vt2)):
            assert _rank_k_error(A, u.numpy(), s.numpy(), vt.numpy()) <= 1.01 * opt
        np.testing.assert_allclose(S.numpy(), S2.numpy(), rtol=1e-3)
        np.testing.assert_allclose(U.numpy().T @ U.numpy(), np.eye(15), atol=1e-4)
        np.testing.assert_allclose(Vt.numpy() @ Vt.numpy().T, np.eye(15), atol=1e-4)


@pytest.mark.parametrize("value_tol", [None, 2e-2])
def test_torch_path_stopping_rules_on_the_device_agree_with_the_host(monkeypatch, value_tol):
    # The torch path keeps T on the device and decides there (one bool read per step);
    # run on the CPU it must stop at the same step as the host path, with the same values.
    import sksvd._backend as B

    img = load_sample_image("china.jpg")
    X = img.reshape(img.shape[0], -1).astype(np.float64)
    exact = np.linalg.svd(X, compute_uv=False)
    ref = randomized_svd(X, 20, value_tol=value_tol, generator=torch.Generator().manual_seed(0),
                         return_info=True)
    monkeypatch.setattr(B, "_HOST_KERNELS_ON_CPU", False)
    got = randomized_svd(torch.from_numpy(X), 20, value_tol=value_tol,
                         generator=torch.Generator().manual_seed(0), return_info=True)
    assert got[3]["n_iter"] == ref[3]["n_iter"]
    np.testing.assert_allclose(got[1].numpy(), ref[1].numpy(), rtol=1e-10)
    err = np.max(np.abs(got[1].numpy() / exact[:20] - 1))
    assert err <= (2e-2 if value_tol else 5e-2)


def test_stop_rule_numpy_and_torch_decide_alike():
    from sksvd.linalg import _StopRule

    exact = np.array([10.0, 5.0, 2.0])
    history = [exact * (1 - 0.5 ** (2 * j)) for j in range(1, 9)]  # Ritz values rising
    for value_tol in (None, 1e-3):
        a, b = _StopRule(2e-2, value_tol, 20.0), _StopRule(2e-2, value_tol, 20.0)
        decisions = [(a.test(v), b.test(torch.from_numpy(v))) for v in history]
        for host, device in decisions[1:]:
            assert bool(host) == bool(device.item())
        assert decisions[0] == (None, None)
    # per value: a last value still rising keeps going an iteration the energy alone would end
    rule, energy_only = _StopRule(1.0, 1e-4, 1e6), _StopRule(1.0, None, 1e6)
    rising = [np.array([100.0, 1.0]), np.array([100.0, 1.5]), np.array([100.0, 1.8]),
              np.array([100.0, 1.9])]
    assert [bool(energy_only.test(v)) for v in rising] == [False, True, True, True]
    assert [bool(rule.test(v)) for v in rising] == [False, False, False, False]


@pytest.mark.parametrize("k", [20, 100])
def test_stopped_run_equals_a_fixed_run_of_its_steps(monkeypatch, k):
    # A step the rule expects to stop at has its eigenpairs computed with its values
    # and reused at the end: the result must be that of a run fixed at those steps,
    # with one eigensolve per step (no second solve of the last matrix).
    import sksvd.linalg as L

    img = load_sample_image("china.jpg")
    X = img.reshape(img.shape[0], -1).astype(np.float64)
    solves = []
    top_eigh = L._top_eigh

    def counted(T, k, vectors=True):
        solves.append((T.shape[0], vectors))
        return top_eigh(T, k, vectors)

    monkeypatch.setattr(L, "_top_eigh", counted)
    auto = randomized_svd(X, k, value_tol=2e-2, generator=torch.Generator().manual_seed(0),
                          return_info=True)
    sizes = [r for r, _ in solves]
    assert len(set(sizes)) == len(sizes) and [v for _, v in solves].count(True) == 1
    monkeypatch.setattr(L, "_top_eigh", top_eigh)
    fixed = randomized_svd(X, k, n_iter=auto[3]["n_iter"],
                           generator=torch.Generator().manual_seed(0))
    for a, b in zip(auto[:3], fixed, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_stop_rule_expects_a_stop_only_when_the_next_test_would_stop():
    from sksvd.linalg import _StopRule

    exact = np.array([10.0, 5.0, 2.0])
    history = [exact * (1 - 0.5 ** (2 * j)) for j in range(1, 12)]  # rate 1/4 per step
    rule, expected = _StopRule(2e-2, 1e-3, 20.0), []
    for v in history:
        expected.append(rule.expects_stop())
        done = rule.test(v)
        if done is not None and bool(done):
            break
    # no prediction before two gains are known; at a constant rate it is exact
    assert expected[:3] == [False, False, False]
    assert expected[-1] and not any(expected[:-1])


def test_device_generator_is_the_given_one_on_the_cpu():
    from sksvd.linalg import _device_generator

    g = torch.Generator().manual_seed(3)
    assert _device_generator(g, torch.device("cpu")) is g
    if torch.cuda.is_available():
        a = _device_generator(torch.Generator().manual_seed(3), torch.device("cuda"))
        b = _device_generator(torch.Generator().manual_seed(3), torch.device("cuda"))
        assert a.device.type == "cuda"
        assert torch.equal(torch.randn(4, generator=a, device="cuda"),
                           torch.randn(4, generator=b, device="cuda"))
