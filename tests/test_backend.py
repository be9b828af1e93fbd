import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sksvd._backend import (
    make_generator,
    resolve_device,
    resolve_dtype,
    seed_from_random_state,
    sparse_matmul,
    to_numpy,
    to_torch,
)


def test_resolve_device_auto_honours_env(monkeypatch):
    monkeypatch.setenv("SKSVD_DEVICE", "cpu")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.delenv("SKSVD_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("bad", ["tpu", "gpu0", "mps"])
def test_resolve_device_rejects_unknown(bad):
    with pytest.raises(ValueError, match=f"device='{bad}'"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_resolve_device_cuda_absent():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_resolve_device_type_error():
    with pytest.raises(TypeError, match="device=3"):
        resolve_device(3)


@pytest.mark.parametrize("dtype,expected", [("float32", torch.float32), (np.float64, torch.float64),
                                            (torch.float32, torch.float32)])
def test_resolve_dtype(dtype, expected):
    assert resolve_dtype(dtype) is expected


@pytest.mark.parametrize("bad", ["int32", np.int64, "banana", torch.int64])
def test_resolve_dtype_rejects(bad):
    with pytest.raises(ValueError, match="dtype="):
        resolve_dtype(bad)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_to_torch_sparse_stays_sparse(fmt):
    X = sp.random(30, 20, density=0.2, format=fmt, random_state=0)
    t = to_torch(X)
    assert t.layout == torch.sparse_csr
    assert t._nnz() == X.nnz
    back = to_numpy(t)
    assert sp.issparse(back)
    np.testing.assert_allclose(back.toarray(), X.toarray(), rtol=1e-6)


def test_to_torch_dense_negative_strides_and_roundtrip():
    a = np.arange(12.0).reshape(3, 4)[:, ::-1]
    t = to_torch(a, dtype=torch.float64)
    np.testing.assert_array_equal(to_numpy(t), a)


def test_sparse_matmul_matches_scipy():
    X = sp.random(40, 25, density=0.3, format="csr", random_state=1)
    B = np.random.default_rng(0).standard_normal((25, 3))
    out = sparse_matmul(to_torch(X, dtype=torch.float64), torch.from_numpy(B))
    np.testing.assert_allclose(out.numpy(), X @ B, rtol=1e-10)


def test_generator_and_seed_are_reproducible():
    a = torch.randn(5, generator=make_generator(7))
    b = torch.randn(5, generator=make_generator(7))
    assert torch.equal(a, b)
    assert seed_from_random_state(np.random.RandomState(0)) == seed_from_random_state(
        np.random.RandomState(0))
    with pytest.raises(ValueError, match="random_state=-1"):
        seed_from_random_state(-1)


def test_resolve_device_env_names_the_variable(monkeypatch):
    monkeypatch.setenv("SKSVD_DEVICE", "tpu")
    with pytest.raises(ValueError, match="SKSVD_DEVICE='tpu'"):
        resolve_device("auto")
    assert resolve_device("cpu").type == "cpu"  # an explicit device ignores the variable
    if not torch.cuda.is_available():
        monkeypatch.setenv("SKSVD_DEVICE", "cuda")
        with pytest.raises(ValueError, match="SKSVD_DEVICE='cuda'.*CUDA is not available"):
            resolve_device("auto")
    else:
        monkeypatch.setenv("SKSVD_DEVICE", "cuda")
        assert resolve_device("auto").type == "cuda"


def test_to_device_and_to_host_round_trip_and_count(device):
    from sksvd._backend import count_transfers, host_read, to_device, to_host

    a = np.arange(6, dtype=np.float64).reshape(2, 3)[:, ::-1]  # negative strides
    with count_transfers() as outer:
        with count_transfers() as inner:
            t = to_device(a, device, torch.float32)
            assert t.device.type == device and t.dtype == torch.float32
            assert to_device(t, device) is t  # already there: no copy, not counted
            back, ones = to_host(t * 2, torch.ones(2, device=device))
            assert host_read(t.sum()) == 15.0
        assert inner == {"h2d": 1, "d2h": 3, "host_reads": 2}
        to_device(np.ones(2), device)
    assert outer == {"h2d": 2, "d2h": 3, "host_reads": 2}
    np.testing.assert_array_equal(back, 2 * a)
    np.testing.assert_array_equal(ones, [1, 1])
    a[:] = 0  # the device copy is the callee's own
    assert to_host(t).sum() == 15.0


def test_to_torch_sparse_on_every_device(device):
    X = sp.random(30, 20, density=0.2, format="csr", random_state=2)
    t = to_torch(X, device=device, dtype=torch.float64)
    assert t.layout == torch.sparse_csr and t.device.type == device
    assert t.crow_indices().dtype == torch.int64
    np.testing.assert_allclose(to_numpy(t).toarray(), X.toarray())


def test_device_array_cached_until_refit_never_carried():
    import copy
    import pickle

    from sklearn.base import clone

    from sksvd import SVDRecommender
    from sksvd._backend import clear_device_cache, count_transfers, device_array

    X = sp.random(40, 30, density=0.3, format="csr", random_state=0)
    est = SVDRecommender(3, device="cpu", random_state=0).fit(X)
    with count_transfers() as n:
        a = device_array(est, "item_factors_", "cpu", torch.float32)
        b = device_array(est, "item_factors_", "cpu", torch.float32)
    assert a is b and n["h2d"] == 1
    np.testing.assert_allclose(a.numpy(), est.item_factors_, rtol=1e-6)
    c = device_array(est, "item_factors_", "cpu", torch.float64)  # another dtype: another copy
    assert c.dtype == torch.float64 and c is not a
    for other in (clone(est), pickle.loads(pickle.dumps(est)), copy.deepcopy(est)):
        assert "item_factors_" not in vars(other) or not any(
            isinstance(v, torch.Tensor) for v in vars(other).values())
        with count_transfers() as n:
            device_array(other, "item_factors_", "cpu", torch.float32) \
                if hasattr(other, "item_factors_") else None
        assert n["h2d"] == (1 if hasattr(other, "item_factors_") else 0)
    est.set_params(n_components=2).fit(X)  # a refit assigns new arrays: a new copy
    d = device_array(est, "item_factors_", "cpu", torch.float32)
    assert d.shape == (30, 2)
    clear_device_cache(est)
    with count_transfers() as n:
        device_array(est, "item_factors_", "cpu", torch.float32)
    assert n["h2d"] == 1
    clear_device_cache()
