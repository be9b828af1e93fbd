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
