import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sksvd._topk import default_batch_size, mask_seen_, topk_items, topk_rows


def _reference(S, k):
    """Independent reference: a full stable sort of each row by (score desc, id asc)."""
    S = np.asarray(S, dtype=np.float64)
    order = np.lexsort((np.broadcast_to(np.arange(S.shape[1]), S.shape), -S), axis=1)[:, :k]
    vals = np.take_along_axis(S, order, axis=1)
    ids = np.where(np.isneginf(vals), -1, order)
    if k > S.shape[1]:
        pad = k - S.shape[1]
        vals = np.hstack([vals, np.full((S.shape[0], pad), -np.inf)])
        ids = np.hstack([ids, np.full((S.shape[0], pad), -1)])
    return ids, vals


def _scores(U, Q, seen):
    S = U @ Q.T
    if seen is not None:
        S = np.where(seen.toarray() != 0, -np.inf, S)
    return S


def _check(S, k, groups):
    ref_ids, ref_vals = _reference(S, k)
    for arr in (S, torch.from_numpy(S)):
        vals, ids = topk_rows(arr, k, groups)
        vals, ids = np.asarray(vals), np.asarray(ids)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(vals, ref_vals.astype(S.dtype))


@pytest.mark.parametrize("n", [7, 50, 1000, 1003])
@pytest.mark.parametrize("groups", [1, 4, 32])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_topk_rows_random_matches_sort(n, groups, k):
    rng = np.random.default_rng(n * 100 + groups * 10 + k)
    S = rng.standard_normal((9, n)).astype(np.float32)
    _check(S, k, groups)


@pytest.mark.parametrize("groups", [4, 32])
def test_topk_rows_ties_lowest_id_first(groups):
    rng = np.random.default_rng(1)
    n = 997  # not a multiple of the group count: a tail outside the groups
    S = rng.integers(0, 4, (12, n)).astype(np.float32)  # heavy ties everywhere
    S[0] = 0.0  # an all-equal row (an empty user with no offsets)
    S[1, :] = -np.inf  # every item excluded
    S[1, [5, 900]] = 2.0  # two left: padding after them
    S[2, n - 3:] = 9.0  # the best items in the tail
    S[3, :: n // groups] = 7.0  # ties spread over every group
    S[4] = np.where(rng.random(n) < 0.9, -np.inf, S[4])
    S[5, 10] = np.nan  # a NaN neither crashes nor is recommended
    S[5, 11:] = 1.0
    for k in (1, 5, 10, 40):
        ref_ids, _ = _reference(np.where(np.isnan(S), -np.inf, S), k)
        for arr in (S, torch.from_numpy(S)):
            vals, ids = (np.asarray(a) for a in topk_rows(arr, k, groups))
            np.testing.assert_array_equal(ids[[0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]],
                                          ref_ids[[0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]])
            assert 10 not in ids[5]


def test_topk_rows_k_above_width_pads():
    S = np.array([[1.0, -np.inf, 3.0], [-np.inf, -np.inf, -np.inf]], dtype=np.float32)
    vals, ids = topk_rows(S, 5)
    np.testing.assert_array_equal(ids, [[2, 0, -1, -1, -1], [-1] * 5])
    assert vals[0, 0] == 3.0 and vals[0, 1] == 1.0 and np.isneginf(vals[0, 2:]).all()


def test_topk_matches_reference_and_is_batch_independent():
    rng = np.random.default_rng(0)
    U, Q = rng.standard_normal((37, 4)), rng.standard_normal((2003, 4))
    seen = sp.random(37, 2003, density=0.3, format="csr", random_state=0)
    ref_ids, ref_vals = _reference(_scores(U, Q, seen), 5)
    for dtype in (torch.float64, torch.float32):
        for bs in (1, 4, 37, 100, None):
            ids, scores = topk_items(U, Q, 5, seen=seen, batch_size=bs, dtype=dtype)
            np.testing.assert_array_equal(ids, ref_ids)
            np.testing.assert_allclose(scores, ref_vals, rtol=1e-5)
            for u in range(37):  # no seen item is ever recommended
                assert not set(ids[u]) & set(seen[u].indices)


def test_topk_ties_do_not_depend_on_batch_size():
    # Integer factors: exact float scores with many ties; lowest id wins each tie.
    rng = np.random.default_rng(2)
    U = rng.integers(-2, 3, (50, 3)).astype(np.float32)
    U[7] = 0  # an all-zero row: every item ties
    Q = rng.integers(-2, 3, (1500, 3)).astype(np.float32)
    seen = sp.random(50, 1500, density=0.05, format="csr", random_state=1)
    ref_ids, _ = _reference(_scores(U, Q, seen), 10)
    np.testing.assert_array_equal(ref_ids[7], np.setdiff1d(np.arange(1500), seen[7].indices)[:10])
    for bs in (1, 3, 16, 50):
        ids, _ = topk_items(U, Q, 10, seen=seen, batch_size=bs)
        np.testing.assert_array_equal(ids, ref_ids)


def test_topk_pads_when_too_few_unseen():
    U, Q = np.ones((2, 1)), np.arange(3.0)[:, None]
    seen = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1]]))
    ids, scores = topk_items(U, Q, 3, seen=seen)
    np.testing.assert_array_equal(ids, [[2, -1, -1], [-1, -1, -1]])
    assert np.isneginf(scores[0, 1:]).all() and scores[0, 0] == 2.0
    assert np.isneginf(scores[1]).all()


def test_offsets_added():
    U, Q = np.zeros((1, 1)), np.zeros((3, 1))
    ids, scores = topk_items(U, Q, 1, item_offset=np.array([0.0, 2.0, 1.0]),
                             user_offset=np.array([10.0]))
    assert ids[0, 0] == 1 and scores[0, 0] == 12.0


def test_offsets_match_reference():
    rng = np.random.default_rng(3)
    U, Q = rng.standard_normal((20, 5)), rng.standard_normal((700, 5))
    c, d = rng.standard_normal(20), rng.standard_normal(700)
    seen = sp.random(20, 700, density=0.1, format="csr", random_state=2)
    S = _scores(U, Q, seen) + c[:, None] + d[None, :]
    ref_ids, ref_vals = _reference(S, 7)
    ids, scores = topk_items(U, Q, 7, seen=seen, user_offset=c, item_offset=d, batch_size=6,
                             dtype=torch.float64)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_vals, rtol=1e-6)


def test_callable_user_vectors_with_offsets():
    rng = np.random.default_rng(4)
    U, Q = rng.standard_normal((11, 3)), rng.standard_normal((60, 3))
    c = rng.standard_normal(11)
    ref = topk_items(U, Q, 4, user_offset=c, dtype=torch.float64)

    def fold(start, stop):
        return torch.from_numpy(U[start:stop]), torch.from_numpy(c[start:stop])

    got = topk_items(fold, Q, 4, n_rows=11, batch_size=5, dtype=torch.float64)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1])


def test_mask_seen_numpy_and_torch():
    seen = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 1]]))
    a = mask_seen_(np.zeros((2, 3)), seen)
    t = mask_seen_(torch.zeros(2, 3), seen)
    np.testing.assert_array_equal(np.isneginf(a), seen.toarray() != 0)
    np.testing.assert_array_equal(np.isneginf(t.numpy()), seen.toarray() != 0)


def test_default_batch_size_bounds_memory():
    # 128 MiB of float32 scores per worker thread.
    assert default_batch_size(50_000) * 50_000 <= 2**25
    assert default_batch_size(3) * 3 <= 2**25
    assert default_batch_size(10**6) == 33
    # A very wide catalogue keeps a few rows per batch: 16 * n_items floats.
    assert default_batch_size(10**9) == 16


def test_tiled_selection_equals_whole_row_selection():
    # The CPU path scores a batch tile by tile and keeps each row's best k as it goes
    # (threshold filter, or the grouped top-k when a tile has many candidates). With
    # small integers the products are exact, so the result must equal the top-k of the
    # whole masked score matrix (by a full sort) exactly: ids, values, lowest-id ties,
    # -1 padding.
    from sksvd._topk import _topk_tiled

    rng = np.random.default_rng(0)
    for trial in range(120):
        b, n, d = rng.integers(1, 30), rng.integers(1, 260), rng.integers(1, 5)
        k = int(rng.integers(1, 25))
        U = rng.integers(-2, 3, (b, d)).astype(np.float32)  # many ties
        Qt = rng.integers(-2, 3, (d, n)).astype(np.float32)
        if trial % 4 == 0:
            Qt = np.sort(Qt, axis=1)  # scores rising with the id: many candidates per tile
        seen = sp.random(b, n, density=rng.random() * 0.9, format="csr",
                         random_state=trial) if trial % 2 else None
        S = U @ Qt
        if seen is not None:
            mask_seen_(S, seen, -np.inf)
        ref_i, ref_v = _reference(S, k)  # a full sort of each row
        v, i = _topk_tiled(U, Qt, k, seen, tile=int(rng.integers(1, 70)))
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_array_equal(v, ref_v)


# ------------------------------------------------------------------ the device path
@pytest.fixture(params=["tiled", "device"])
def topk_device(device, request, monkeypatch):
    """Each device, and on the CPU both paths: the tiled CPU path and the device path
    (the GPU's code, on torch's CPU kernels)."""
    from sksvd import _backend

    if request.param == "tiled" and device != "cpu":
        pytest.skip("the tiled path is the CPU's")
    monkeypatch.setattr(_backend, "_HOST_KERNELS_ON_CPU", request.param != "device")
    return device


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_topk_items_every_device_matches_full_sort(topk_device, dtype):
    rng = np.random.default_rng(10)
    U, Q = rng.standard_normal((83, 6)), rng.standard_normal((1531, 6))
    seen = sp.random(83, 1531, density=0.2, format="csr", random_state=3)
    ref_ids, ref_vals = _reference(_scores(U, Q, seen), 7)
    for bs in (1, 10, 83, 500, None, "auto"):
        ids, scores = topk_items(U, Q, 7, seen=seen, batch_size=bs, device=topk_device,
                                 dtype=dtype)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(scores, ref_vals, rtol=1e-5)
        assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_topk_items_every_device_ties_lowest_id(topk_device):
    # Integer factors: exact float32 scores, ties everywhere; zero rows tie on every
    # item (the grouped selection flags them and the exact pass redoes them).
    rng = np.random.default_rng(11)
    U = rng.integers(-2, 3, (70, 3)).astype(np.float32)
    U[[0, 33, 69]] = 0
    Q = rng.integers(-2, 3, (2100, 3)).astype(np.float32)
    seen = sp.random(70, 2100, density=0.05, format="lil", random_state=4)
    seen[5, :40] = 0  # every item seen but the first 40
    seen[5, 40:] = 1
    seen = seen.tocsr()
    seen.eliminate_zeros()
    for k in (1, 10, 45):
        ref_ids, ref_vals = _reference(_scores(U, Q, seen), k)
        for bs in (1, 8, 70):
            ids, scores = topk_items(U, Q, k, seen=seen, batch_size=bs, device=topk_device)
            np.testing.assert_array_equal(ids, ref_ids)
            np.testing.assert_array_equal(scores, ref_vals.astype(np.float32))


def test_topk_items_every_device_offsets_callable_padding(topk_device):
    rng = np.random.default_rng(12)
    U, Q = rng.standard_normal((25, 4)), rng.standard_normal((9, 4))
    c, d = rng.standard_normal(25), rng.standard_normal(9)
    seen = sp.random(25, 9, density=0.5, format="csr", random_state=5)
    ref_ids, ref_vals = _reference(_scores(U, Q, seen) + c[:, None] + d[None, :], 12)
    ids, scores = topk_items(U, Q, 12, seen=seen, user_offset=c, item_offset=d, batch_size=4,
                             device=topk_device, dtype=torch.float64)
    np.testing.assert_array_equal(ids, ref_ids)  # k > n_items: padded with -1 / -inf
    np.testing.assert_allclose(scores, ref_vals, rtol=1e-6)

    dev = torch.device(topk_device)

    def fold(start, stop):  # vectors made on the device, batch by batch
        return (torch.from_numpy(U[start:stop]).to(dev),
                torch.from_numpy(c[start:stop]).to(dev))

    got = topk_items(fold, Q, 12, n_rows=25, seen=seen, item_offset=d, batch_size=6,
                     device=topk_device, dtype=torch.float64)
    np.testing.assert_array_equal(got[0], ref_ids)
    np.testing.assert_allclose(got[1], ref_vals, rtol=1e-6)


def test_topk_items_every_device_empty_inputs(topk_device):
    ids, scores = topk_items(np.zeros((0, 3)), np.ones((5, 3)), 2, device=topk_device)
    assert ids.shape == (0, 2) and scores.shape == (0, 2)


@pytest.mark.parametrize("ties", [False, True])
def test_device_path_transfers_do_not_grow_with_batches(monkeypatch, ties):
    # The device path run on the CPU: every transfer goes through sksvd._backend's
    # helpers, which count them. The counts must not depend on the number of batches.
    from sksvd import _backend
    from sksvd._backend import count_transfers

    monkeypatch.setattr(_backend, "_HOST_KERNELS_ON_CPU", False)
    rng = np.random.default_rng(13)
    if ties:
        U = rng.integers(-1, 2, (600, 2)).astype(np.float32)
        Q = rng.integers(-1, 2, (900, 2)).astype(np.float32)
    else:
        U, Q = rng.standard_normal((600, 8)), rng.standard_normal((900, 8))
    seen = sp.random(600, 900, density=0.05, format="csr", random_state=6)
    c, d = rng.standard_normal(600), rng.standard_normal(900)
    ref_ids, _ = _reference(_scores(U, Q, seen) + c[:, None] + d[None, :], 10)
    counts = []
    for bs in (600, 97, 7):  # 1, 7 and 86 batches
        with count_transfers() as n:
            ids, _ = topk_items(U, Q, 10, seen=seen, user_offset=c, item_offset=d,
                                batch_size=bs, device="cpu", dtype=torch.float64)
        np.testing.assert_array_equal(ids, ref_ids)
        counts.append(n)
    assert counts[0] == counts[1] == counts[2], counts
    # Factors, offsets, user vectors, the seen matrix (2 arrays) up; results (2) down.
    assert counts[0]["h2d"] <= 6 + 2 * ties and counts[0]["d2h"] <= 3
    assert counts[0]["host_reads"] <= 2


def _device_path_on_cpu(monkeypatch, pending_bytes):
    """Run the device path's torch kernels on the CPU, with a tie-check budget in bytes."""
    from sksvd import _backend, _topk

    monkeypatch.setattr(_backend, "_HOST_KERNELS_ON_CPU", False)
    monkeypatch.setattr(_topk, "_PENDING_BYTES", pending_bytes)


def test_device_path_checkpoints_bound_held_vectors(monkeypatch):
    # With a tiny budget for the vectors kept for the tie check, the host reads the
    # tie flags at several checkpoints: results unchanged.
    from sksvd._backend import count_transfers

    _device_path_on_cpu(monkeypatch, 1000)
    rng = np.random.default_rng(14)
    U = rng.integers(-1, 2, (300, 2)).astype(np.float32)
    Q = rng.integers(-1, 2, (700, 2)).astype(np.float32)
    seen = sp.random(300, 700, density=0.05, format="csr", random_state=7)
    ref_ids, _ = _reference(_scores(U, Q, seen), 5)
    with count_transfers() as n:
        ids, _ = topk_items(U, Q, 5, seen=seen, batch_size=50, device="cpu")
    np.testing.assert_array_equal(ids, ref_ids)
    assert n["host_reads"] > 2  # 50 rows x 2 floats = 400 bytes: a checkpoint every 3 batches


def test_topk_items_rejects_bad_batch_size_and_seen_shape():
    U, Q = np.ones((3, 2)), np.ones((4, 2))
    with pytest.raises(ValueError, match="batch_size='big'"):
        topk_items(U, Q, 2, batch_size="big")
    with pytest.raises(ValueError, match="seen: expected 3 rows"):
        topk_items(U, Q, 2, seen=sp.csr_matrix((2, 4)))


def test_device_batch_size():
    from sksvd._topk import device_batch_size

    assert device_batch_size(50_000, torch.device("cpu")) == default_batch_size(50_000)
    if torch.cuda.is_available():
        rows = device_batch_size(50_000, torch.device("cuda"))
        free, _ = torch.cuda.mem_get_info()
        assert rows * 50_000 * 4 <= max(min(2**30, free // 8), 16 * 50_000 * 4)


def test_device_path_callable_mixing_offsets_and_ties(monkeypatch):
    # A callable that gives offsets for some batches only (two item sides), tied rows in
    # every batch, and checkpoints every few batches: each row still equals a full sort.
    _device_path_on_cpu(monkeypatch, 2000)
    rng = np.random.default_rng(15)
    U = rng.integers(-1, 2, (230, 2)).astype(np.float32)
    Q = rng.integers(-1, 2, (500, 2)).astype(np.float32)
    c = rng.integers(-2, 3, 230).astype(np.float32)
    seen = sp.random(230, 500, density=0.1, format="csr", random_state=8)

    def fold(start, stop):
        off = torch.from_numpy(c[start:stop]) if (start // 20) % 2 else None
        return torch.from_numpy(U[start:stop]), off

    S = _scores(U, Q, seen)
    with_off = (np.arange(230) // 20) % 2 == 1
    S[with_off] += c[with_off, None]
    ref_ids, ref_vals = _reference(S, 6)
    ids, scores = topk_items(fold, Q, 6, n_rows=230, seen=seen, batch_size=20, device="cpu")
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_vals.astype(np.float32))
