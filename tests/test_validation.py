import numpy as np
import pytest
import scipy.sparse as sp

from sksvd._validation import (
    check_float,
    check_int,
    check_interactions,
    check_k,
    check_matrix,
    check_n_components,
)


def test_check_matrix_refuses_nan_inf_1d_3d_empty_strings():
    with pytest.raises(ValueError, match="NaN"):
        check_matrix(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="infinity"):
        check_matrix(np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match="2D"):
        check_matrix(np.ones(3))
    with pytest.raises(ValueError, match="dim 3"):
        check_matrix(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="0 sample"):
        check_matrix(np.ones((0, 3)))
    with pytest.raises(TypeError, match="X='abc'"):
        check_matrix("abc")
    with pytest.raises(ValueError):
        check_matrix(np.array([["a", "b"]]))


def test_check_interactions_sums_duplicates_without_touching_input():
    rows, cols = np.array([0, 0, 1]), np.array([1, 1, 0])
    X = sp.coo_matrix((np.array([1.0, 2.0, 3.0]), (rows, cols)), shape=(2, 2))
    csr_dup = sp.csr_matrix((np.array([1.0, 2.0, 3.0]), np.array([1, 1, 0]),
                             np.array([0, 2, 3])), shape=(2, 2))
    before = csr_dup.data.copy()
    for inp in (X, csr_dup):
        out = check_interactions(inp)
        assert out.format == "csr" and out.dtype == np.float32
        np.testing.assert_array_equal(out.toarray(), [[0, 3], [3, 0]])
    np.testing.assert_array_equal(csr_dup.data, before)
    assert csr_dup.nnz == 3


def test_check_interactions_dense_and_nan():
    out = check_interactions(np.array([[0, 5], [3, 0]]))
    assert out.nnz == 2
    with pytest.raises(ValueError, match="NaN"):
        check_interactions(sp.csr_matrix(np.array([[np.nan, 1.0]])))


def test_scalar_checks_name_argument_and_value():
    with pytest.raises(ValueError, match=r"k=0: expected an int in \[1, 5\]"):
        check_k(0, 5)
    with pytest.raises(ValueError, match="k=6"):
        check_k(6, 5)
    with pytest.raises(TypeError, match="k=2.5"):
        check_k(2.5, 5)
    with pytest.raises(TypeError, match="batch_size=True"):
        check_int(True, "batch_size")
    with pytest.raises(ValueError, match=r"holdout=1.5: expected a float in \(0, 1\)"):
        check_float(1.5, "holdout", low=0, high=1)
    with pytest.raises(ValueError, match="holdout=nan"):
        check_float(float("nan"), "holdout", low=0, high=1)


@pytest.mark.parametrize("bad", [0, -1, 4, 1.0, 0.0, 1.5, -0.2])
def test_check_n_components_rejects(bad):
    with pytest.raises(ValueError, match=f"n_components={bad!r}"):
        check_n_components(bad, n_samples=5, n_features=3)


def test_check_n_components_accepts():
    assert check_n_components(3, n_samples=5, n_features=3) == 3
    assert check_n_components(0.8, n_samples=5, n_features=3) == 0.8
    with pytest.raises(TypeError):
        check_n_components("2", n_samples=5, n_features=3)


def test_public_functions_validate_with_scikit_learn_constraints():
    from sklearn.utils._param_validation import InvalidParameterError

    from sksvd.metrics import catalog_coverage
    from sksvd.model_selection import leave_k_out, make_rating_scorer, make_topk_scorer

    with pytest.raises(InvalidParameterError, match=r"^k=0: expected an int >= 1$"):
        leave_k_out(np.eye(3), k=0)
    with pytest.raises(TypeError, match=r"^k=1\.5: expected an int >= 1$"):
        make_topk_scorer("ndcg", k=1.5)
    with pytest.raises(ValueError, match=r"^batch_size=-2: expected an int >= 1 or None$"):
        make_rating_scorer("rmse", batch_size=-2)
    with pytest.raises(ValueError, match=r"^n_items=0: "):
        catalog_coverage([[0]], n_items=0)
    assert make_topk_scorer("ndcg", k=np.int64(5)).k == 5
