import numpy as np
import scipy.sparse as sp

from sksvd._topk import default_batch_size, topk_items


def _reference(U, Q, k, seen):
    S = U @ Q.T
    if seen is not None:
        S = np.where(seen.toarray() != 0, -np.inf, S)
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(S, order, axis=1)


def test_topk_matches_numpy_and_is_batch_independent():
    rng = np.random.default_rng(0)
    U, Q = rng.standard_normal((37, 4)), rng.standard_normal((23, 4))
    seen = sp.random(37, 23, density=0.3, format="csr", random_state=0)
    ref_ids, ref_scores = _reference(U, Q, 5, seen)
    for bs in (1, 4, 37, 100):
        ids, scores = topk_items(U, Q, 5, seen=seen, batch_size=bs, dtype=__import__("torch").float64)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-6)
        assert not np.isin(ids, -1).any()
        # no seen item is ever recommended
        for u in range(37):
            assert not set(ids[u]) & set(seen[u].indices)


def test_topk_pads_when_too_few_unseen():
    U, Q = np.ones((2, 1)), np.arange(3.0)[:, None]
    seen = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1]]))
    ids, scores = topk_items(U, Q, 3, seen=seen)
    np.testing.assert_array_equal(ids, [[2, -1, -1], [-1, -1, -1]])
    assert np.isneginf(scores[0, 1:]).all() and scores[0, 0] == 2.0


def test_offsets_added():
    U, Q = np.zeros((1, 1)), np.zeros((3, 1))
    ids, scores = topk_items(U, Q, 1, item_offset=np.array([0.0, 2.0, 1.0]),
                             user_offset=np.array([10.0]))
    assert ids[0, 0] == 1 and scores[0, 0] == 12.0


def test_default_batch_size_bounds_memory():
    assert default_batch_size(50_000) * 50_000 <= 2**24
    assert default_batch_size(10**9) == 1
