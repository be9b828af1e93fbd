"""Smoke tests of the benchmark suite's plumbing on tiny data (no heavy runs)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

# benchmarks/ is a package of the repository, not of the installed sksvd.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _harness as h  # noqa: E402
from benchmarks import bench_growth, bench_topn, bench_topn_ablation, check, report, run  # noqa: E402


def _allocate(n_mb):
    a = np.ones(n_mb * 2**20 // 8)
    return float(a.sum())


def test_measure_forkserver_counts_memory_beyond_the_input():
    # A fresh process (torch may already have run here: a plain fork could deadlock).
    big_input = np.ones(40 * 2**20 // 8)
    res = h.measure(_allocate, 60, start_method="forkserver", timeout=120)
    assert res["result"] == 60 * 2**20 // 8
    assert 55 < res["peak_extra_mb"] < 120
    res = h.measure(np.sum, big_input, start_method="forkserver", timeout=120)
    assert res["peak_extra_mb"] < 30  # the unpickled input is not counted


def test_relevant_and_scores_match_hand_computation():
    X_test = sp.csr_matrix(np.array([[5, 3, 0, 4], [0, 0, 2, 0]], dtype=np.float32))
    R = bench_topn.relevant_of(X_test)
    np.testing.assert_array_equal(R.toarray() > 0, [[1, 0, 0, 1], [0, 0, 0, 0]])
    # user 0 gets [0, 2]: one hit at rank 1 among 2 relevant items.
    res = bench_topn.score_lists(R[:1], np.array([[0, 2]]), ks=(2,))
    assert res["precision@2"] == pytest.approx(0.5)
    assert res["recall@2"] == pytest.approx(0.5)
    assert res["ndcg@2"] == pytest.approx(1 / (1 + 1 / np.log2(3)))
    assert res["map@2"] == pytest.approx(0.5)
    assert res["coverage@2"] == pytest.approx(2 / 4)


def test_most_popular_protocol_excludes_seen_and_skips_users():
    X_train = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [1, 0, 1, 1, 0], [1, 1, 1, 0, 0]],
                                     dtype=np.float32))
    X_test = sp.csr_matrix(np.array([[0, 0, 5, 0, 0], [0, 2, 0, 0, 0], [0, 0, 0, 4, 0]],
                                    dtype=np.float32))
    model = bench_topn.MostPopular()
    state = model.fit(X_train, {}, "cpu")
    res, seconds = bench_topn.evaluate_split(model, state, X_train, X_test, "cpu", ks=(1,))
    # user 1 rated its test item 2 (< 4): skipped; users 0 and 2 evaluated.
    assert res["n_users"] == 2 and res["n_skipped"] == 1
    # popularity 3, 2, 2, 1, 0: user 0 (seen 0, 1) gets item 2, user 2 gets item 3: hits.
    assert res["precision@1"] == pytest.approx(1.0)
    assert seconds >= 0


def test_quality_checks_and_ratios():
    names = ("PureSVD k=20", "PureSVD k=50", "PureSVD k=100", "scipy-svds PureSVD k=50",
             "SVDRecommender()", "FunkSVD()", "AsySVD()", "EASE", "SVDRecommender grid-best",
             "implicit ALS")
    fit_s = {"SVDRecommender()": 0.1, "FunkSVD()": 2.0, "AsySVD()": 3.5}
    per_split = [
        {"dataset": "ml-100k", "split": s, "model": m, "ndcg@10": v,
         "fit_s": fit_s.get(m, 0.1)}
        for s, vals in (("u1", (0.38, 0.40, 0.35, 0.4004, 0.42, 0.41, 0.39, 0.41, 0.43, 0.37)),
                        ("u2", (0.37, 0.39, 0.34, 0.3905, 0.41, 0.40, 0.38, 0.40, 0.42, 0.36)))
        for m, v in zip(names, vals, strict=True)
    ]
    summary = [{"dataset": "ml-100k", "model": m,
                "ndcg@10": np.mean([r["ndcg@10"] for r in per_split if r["model"] == m])}
               for m in names]
    checks = {c["check"]: c for c in bench_topn.make_checks(per_split, summary)}
    match = checks["ml-100k: PureSVD k=50 matches scipy-svds PureSVD k=50 (mean NDCG@10)"]
    assert match["passed"] and "5.00e-04" in match["detail"]
    best = "PureSVD's best of k in {20, 50, 100}"
    # PureSVD's best is k=50 (0.395): SVDRecommender() 0.415 and FunkSVD() 0.405 pass,
    # AsySVD() 0.385 fails.
    assert checks[f"ml-100k: SVDRecommender() mean NDCG@10 >= {best}"]["passed"]
    assert checks[f"ml-100k: FunkSVD() mean NDCG@10 >= {best}"]["passed"]
    asy = checks[f"ml-100k: AsySVD() mean NDCG@10 >= {best}"]
    assert not asy["passed"] and asy["difference"] == pytest.approx(0.385 - 0.395)
    ease = checks["ml-100k: best sksvd grid-best mean NDCG@10 >= 1.02 x EASE"]
    assert ease["difference"] == pytest.approx(0.425 / 0.405) and ease["passed"]
    # fit_s on u1: 0.1 s, 2.0 s and 3.5 s against the 3 s limit.
    assert [checks[f"{m} fit on ml-100k u1.base <= 3 s"]["passed"]
            for m in ("SVDRecommender()", "FunkSVD()", "AsySVD()")] == [True, True, False]
    ratios = bench_topn.quality_ratios(summary)
    assert ratios["ml-100k NDCG@10 SVDRecommender() / implicit ALS"]["value"] == pytest.approx(
        0.415 / 0.365)


def test_ease_dual_form_matches_the_direct_formula():
    # B = I - P diag(1/diag(P)), P = (X^T X + lambda I)^-1 (Steck 2019), in numpy.
    X = sp.random(30, 12, density=0.3, format="csr", random_state=0, dtype=np.float64) * 5
    lam = 3.0
    P = np.linalg.inv(X.T @ X + lam * np.eye(12))
    B = np.eye(12) - P / np.diag(P)[None, :]
    S = np.asarray(X @ B)
    model = bench_topn.EASE()
    state = model.fit(X, {"lambda": lam}, "cpu")
    U, V = np.asarray((X @ X.T).toarray()) @ state[1], state[2]
    unseen = X.toarray() == 0
    np.testing.assert_allclose((U @ V.T)[unseen], S[unseen], atol=1e-10)
    ids = model.recommend(state, X, None, 3, "cpu")
    expected = np.argsort(-np.where(unseen, S, -np.inf), axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(ids, expected)


def test_growth_exponent_and_figure(tmp_path):
    x = np.array([1e6, 5e6, 2e7])
    assert bench_growth.growth_exponent(x, 3 * x**1.5) == pytest.approx(1.5)
    assert bench_growth.growth_exponent([1e6], [1.0]) is None
    rows = [{"method": m, "nnz": n, "seconds": c * n / 1e6, "peak_extra_mb": 10 + n / 1e5}
            for m, c in (("a", 1.0), ("b", 2.0)) for n in x]
    path = bench_growth.plot(rows, "nnz", "nnz", tmp_path / "g.png", "test")
    assert path.exists() and path.stat().st_size > 1000
    assert bench_growth.exponents(rows, "nnz")["a"][0] == pytest.approx(1.0)


def _fake_results(folder, monkeypatch, fit_ratio, ndcg_ratio):
    monkeypatch.setattr(h, "RESULTS", folder)
    h.write_results("demo", [{"model": "ours", "seconds": 1.0}], notes="Protocol in words.",
                    tables={"Checks": [{"check": "x", "passed": True}]},
                    extra={"checks": [{"check": "fast enough", "passed": True}],
                           "ratios": {"fit ours / peer": {"value": fit_ratio, "better": "lower"},
                                      "ndcg ours / peer": {"value": ndcg_ratio,
                                                           "better": "higher"}}})
    h.write_results("demo", [{"model": "ours", "seconds": 0.1}], device="cuda")


def test_report_gathers_tables_checks_ratios_and_devices(tmp_path, monkeypatch):
    _fake_results(tmp_path, monkeypatch, 0.5, 1.1)
    (tmp_path / "demo.png").write_bytes(b"png")
    text = report.build_report(tmp_path, run_info=[{"benchmark": "demo", "command": "c",
                                                    "seconds": 1.0, "status": "ok"}])
    assert "## Device: cpu" in text and "## Device: cuda" in text
    assert "Protocol in words." in text and "fast enough" in text
    assert "fit ours / peer" in text and "![demo.png](demo.png)" in text
    index = json.loads((tmp_path / "REPORT.json").read_text())
    assert index["devices"] == ["cpu", "cuda"] and len(index["ratios"]) == 2


def test_check_flags_a_ratio_worse_by_more_than_20_percent(tmp_path, monkeypatch):
    base, good, bad = tmp_path / "base", tmp_path / "good", tmp_path / "bad"
    _fake_results(base, monkeypatch, 0.5, 1.10)
    _fake_results(good, monkeypatch, 0.55, 1.00)  # +10% time, -9% quality: within 20%
    _fake_results(bad, monkeypatch, 0.65, 1.10)  # +30% time
    assert check.main(["--baseline", str(base), "--fresh", str(good)]) == 0
    assert check.main(["--baseline", str(base), "--fresh", str(bad)]) == 1
    rows = check.compare(check.ratios_of(base), {})
    assert {r["status"] for r in rows} == {"missing"}
    rows = check.compare(check.ratios_of(base), check.ratios_of(bad))
    assert [r["status"] for r in rows if r["ratio"].startswith("fit")] == ["WORSE"]


def test_runner_finds_benchmarks_and_builds_commands():
    names = run.discover()
    assert {"topn", "growth"} <= set(names)
    cmd = run.command_for("topn", quick=True, device="cpu")
    assert cmd[1:] == ["-m", "benchmarks.bench_topn", "--device", "cpu", "--quick"]


def test_check_keeps_the_better_fresh_value_and_maps_results_to_modules():
    a = {("g", "t"): {"value": 2.0, "better": "lower"}, ("g", "q"): {"value": 1.0,
                                                                      "better": "higher"}}
    b = {("g", "t"): {"value": 1.5, "better": "lower"}, ("g", "q"): {"value": 0.9,
                                                                      "better": "higher"}}
    best = check._best(a, b)
    assert best[("g", "t")]["value"] == 1.5 and best[("g", "q")]["value"] == 1.0
    assert check._module_of("topn_speed") == "topn"
    assert check._module_of("growth") == "growth"


def test_recommend_breakdown_times_the_public_api():
    from sksvd import SVDRecommender

    X = sp.random(300, 40, density=0.2, format="csr", random_state=0, dtype=np.float32)
    rec = SVDRecommender(n_components=5, random_state=0, device="cpu").fit(X)
    phases, rows, n_batches = bench_topn.recommend_breakdown(rec, X, 5, "cpu", every=2,
                                                             rows=64)
    assert (rows, n_batches) == (64, 5) and len(phases) == 3
    assert phases["fold-in (transform)"] > 0


def test_validation_splits_are_the_training_part_split_again(data_home, monkeypatch):
    # --validation: the 80% and the 20% of each user's training ratings, which add up to
    # the training part (the test part plays no role).
    monkeypatch.setenv("SKSVD_DATA_HOME", str(data_home))
    (split, X_fit, X_val), = list(bench_topn.splits("ml-100k", quick=True, validation=True))
    (_, X_train, _), = list(bench_topn.splits("ml-100k", quick=True))
    assert split == "u1, validation"
    assert (X_fit + X_val != X_train).nnz == 0 and X_fit.multiply(X_val).nnz == 0
    n_u = np.diff(X_train.indptr)
    np.testing.assert_array_equal(np.diff(X_val.indptr), np.floor(0.2 * n_u).astype(int))


@pytest.mark.parametrize("item_penalty", [0.0, 1.5])
def test_ablation_zero_diagonal_is_ease_closed_form(item_penalty):
    # A full-rank SVDRecommender whose scores are divided by 1 - W_jj ranks unseen items
    # by EASE's closed form B = I - P diag(1/diag(P)), P = (X^T X + diag(lam + c ||x_j||^2))^-1,
    # solved here directly with numpy.
    from sksvd import SVDRecommender

    rng = np.random.default_rng(0)
    X = sp.random(40, 12, density=0.4, format="csr", random_state=1, dtype=np.float64)
    X.data = np.ceil(5 * X.data)
    lam = 7.0
    rec = SVDRecommender(None, shrinkage=lam, item_penalty=item_penalty, dtype="float64",
                         device="cpu").fit(X)
    scale = bench_topn_ablation.zero_diagonal_scale(rec)
    X_rows = sp.csr_matrix((rng.random((5, 12)) < 0.3) * rng.integers(1, 6, (5, 12)),
                           dtype=np.float64)
    ours = (rec.transform(X_rows) @ rec.item_factors_.T) * scale
    Xd = X.toarray()
    G = Xd.T @ Xd
    P = np.linalg.inv(G + np.diag(lam + item_penalty * np.diag(G)))
    B = np.eye(12) - P / np.diag(P)[None, :]
    unseen = X_rows.toarray() == 0
    # rtol: the estimator holds the scaled interactions in float32.
    np.testing.assert_allclose(ours[unseen], (X_rows @ B)[unseen], rtol=1e-6, atol=1e-9)


def test_ablation_zero_diagonal_refuses_a_lift_above_the_ridge():
    from sksvd import SVDRecommender

    X = sp.random(40, 12, density=0.4, format="csr", random_state=1, dtype=np.float64)
    rec = SVDRecommender(None, shrinkage=1e-3, low_pass=0.5, device="cpu").fit(X)
    with pytest.raises(ValueError, match="zero_diagonal"):
        bench_topn_ablation.zero_diagonal_scale(rec)


def test_ablation_ntk_relu_is_the_wide_network_limit():
    # The empirical tangent kernel of f(x) = sqrt(2/m) sum_r a_r relu(w_r . x), a_r and
    # w_r standard normal, summed over both layers' gradients, for a wide network.
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 6))
    A[1] = -A[0]                                  # an angle of pi
    A[2] = 3 * A[0]                               # an angle of 0
    m = 400_000
    W = rng.normal(size=(m, 6))
    a = rng.normal(size=m)
    pre = A @ W.T                                 # (4, m)
    act, step = np.maximum(pre, 0), (pre > 0).astype(float)
    empirical = 2 / m * (act @ act.T + (A @ A.T) * ((step * a ** 2) @ step.T))
    K = bench_topn_ablation.ntk_relu(A, A)
    np.testing.assert_allclose(K, empirical, rtol=0.02, atol=0.02 * np.abs(K).max())
    # Hand-worked: K(x, x) = 2 |x|^2; opposite rows give 0.
    np.testing.assert_allclose(np.diag(K), 2 * (A ** 2).sum(1))
    assert abs(K[0, 1]) < 1e-12


def test_ablation_rp3beta_by_hand():
    X = sp.csr_matrix(np.array([[5, 3, 0], [0, 4, 1], [2, 0, 0]], dtype=float))
    W = bench_topn_ablation.RP3beta(2.0, 0.5).fit(X, {}, "cpu")
    B = (X.toarray() != 0).astype(float)
    ref = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            walk = sum(B[u, i] / B[:, i].sum() * B[u, j] / B[u].sum() for u in range(3))
            ref[i, j] = 0 if i == j else walk ** 2 / B[:, j].sum() ** 0.5
    np.testing.assert_allclose(W, ref)


def test_ablation_item_biases_by_hand():
    X = sp.csr_matrix(np.array([[5, 3, 0], [0, 4, 1], [2, 0, 0]], dtype=float))
    mu = 15 / 5
    ref = [((5 - mu) + (2 - mu)) / 27, ((3 - mu) + (4 - mu)) / 27, (1 - mu) / 26]
    np.testing.assert_allclose(bench_topn_ablation.item_biases(X), ref)


def test_ablation_dense_forms_match_the_reference():
    # The materialised item-item weights score as the estimator does, and a blend
    # with weight 0 ranks as the reference.
    X = sp.random(60, 25, density=0.3, format="csr", random_state=2, dtype=np.float64)
    X.data = np.ceil(5 * X.data)
    rows = X[:8]
    ref = bench_topn_ablation.Variant({})
    state = ref.fit(X, {}, "cpu")
    full = bench_topn_ablation.Neighbours(None)
    np.testing.assert_allclose(full.scores(full.fit(X, {}, "cpu"), rows),
                               ref.scores(state, rows), rtol=1e-4, atol=1e-6)
    blend = bench_topn_ablation.Blend(bench_topn_ablation.RP3beta(1.0, 0.5), 0.0)
    np.testing.assert_array_equal(blend.recommend(blend.fit(X, {}, "cpu"), rows, None, 5, "cpu"),
                                  ref.recommend(state, rows, None, 5, "cpu"))
    sparse = bench_topn_ablation.Neighbours(3)
    assert ((sparse.fit(X, {}, "cpu") != 0).sum(0) <= 3).all()


def test_ablation_co_rated_pairs_by_hand():
    X = sp.csr_matrix(np.array([[5, 3, 1, 0], [4, 2, 0, 0], [1, 3, 2, 0], [0, 1, 4, 5]],
                               dtype=float))
    # Co-rated counts: (0,1) 3, (0,2) 2, (1,2) 3, (1,3) 1, (2,3) 1.
    pi, pj = bench_topn_ablation.co_rated_pairs(X, 10, min_count=2)
    assert list(zip(pi, pj, strict=True)) == [(0, 1), (1, 2), (0, 2)]
    pi, pj = bench_topn_ablation.co_rated_pairs(X, 1, min_count=1)
    assert list(zip(pi, pj, strict=True)) == [(0, 1)]
    Z = bench_topn_ablation.pair_indicators(X, np.array([0, 2]), np.array([2, 3]))
    np.testing.assert_array_equal(Z, [[1, 0], [0, 0], [1, 0], [0, 1]])


def test_ablation_pair_weights_are_the_ridge_over_allowed_pairs():
    rng = np.random.default_rng(3)
    X = sp.csr_matrix((rng.random((40, 6)) < 0.5) * rng.integers(1, 6, (40, 6)), dtype=float)
    pi, pj = bench_topn_ablation.co_rated_pairs(X, 8, min_count=1)
    Z = bench_topn_ablation.pair_indicators(X, pi, pj)
    R = rng.normal(size=(40, 6))
    C = bench_topn_ablation.pair_weights(Z, R, pi, pj, 2.0)
    for k in range(6):
        allowed = (pi != k) & (pj != k)
        Za = Z[:, allowed]
        ref = np.linalg.solve(Za.T @ Za + 2.0 * np.eye(allowed.sum()), Za.T @ R[:, k])
        np.testing.assert_allclose(C[allowed, k], ref, atol=1e-10)
        np.testing.assert_array_equal(C[~allowed, k], 0.0)


def test_ablation_ease_weights_are_the_zero_diagonal_ridge():
    rng = np.random.default_rng(4)
    X = sp.csr_matrix((rng.random((30, 7)) < 0.5) * rng.integers(1, 6, (30, 7)), dtype=float)
    Xd = X.toarray()
    T = rng.normal(size=(30, 7))
    P = np.linalg.inv(Xd.T @ Xd + 5.0 * np.eye(7))
    Q = P @ Xd.T @ T
    ref = Q - P * (np.diag(Q) / np.diag(P))[None, :]
    B = bench_topn_ablation.ease_weights(X, T, 5.0)
    np.testing.assert_allclose(B, ref, atol=1e-10)
    np.testing.assert_allclose(np.diag(B), 0.0, atol=1e-10)
    # The target X gives EASE's closed form.
    np.testing.assert_allclose(bench_topn_ablation.ease_weights(X, Xd, 5.0),
                               np.eye(7) - P / np.diag(P)[None, :], atol=1e-10)


def test_ablation_higher_order_without_pairs_ranks_as_ease():
    X = sp.random(50, 20, density=0.3, format="csr", random_state=5, dtype=np.float64)
    X.data = np.ceil(5 * X.data)
    rows = X[:10]
    ease = bench_topn.EASE()
    ho = bench_topn_ablation.HigherOrder(0, 1.0)
    np.testing.assert_array_equal(
        ho.recommend(ho.fit(X, {"lambda": 30.0}, "cpu"), rows, None, 5, "cpu"),
        ease.recommend(ease.fit(X, {"lambda": 30.0}, "cpu"), rows, None, 5, "cpu"))
    # With pairs: no pair predicts its own items, diag(B) stays 0, and each round of
    # the alternating ridge fits lowers the penalised squared error.
    T = X.toarray()

    def objective(B, Z, C):
        return (np.square(T - X @ B - Z @ C).sum() + 30.0 * np.square(B).sum()
                + 1.0 * np.square(C).sum())

    values = []
    for iters in (0, 1, 2, 4):
        B, pi, pj, C = bench_topn_ablation.HigherOrder(20, 1.0, iters).fit(
            X, {"lambda": 30.0}, "cpu")
        values.append(objective(B, bench_topn_ablation.pair_indicators(X, pi, pj), C))
    assert len(pi) == 20
    assert np.all(C[np.arange(20), pi] == 0) and np.all(C[np.arange(20), pj] == 0)
    np.testing.assert_allclose(np.diag(B), 0.0, atol=1e-10)
    assert values[0] > values[1] > values[2] > values[3]


def test_ablation_quick_run_writes_its_table(data_home, monkeypatch, tmp_path):
    # The quick run: ml-100k u1's validation split, three variants, each a ratio to EASE.
    monkeypatch.setenv("SKSVD_DATA_HOME", str(data_home))
    monkeypatch.setattr(h, "RESULTS", tmp_path)
    rows = bench_topn_ablation.main(quick=True, log=lambda *a: None)
    assert [r["variant"] for r in rows] == list(bench_topn_ablation.QUICK_VARIANTS)
    assert all(0.5 < r["ml-100k / EASE"] < 1.5 for r in rows)
    payload = json.loads((tmp_path / "topn_ablation_quick.json").read_text())
    assert payload["reference"]["item_penalty"] == 1.0
    # The quick grid has one point: both ways of choosing it score the same model.
    choice = payload["tables"]["Choosing the grid-best point: over users or over ratings"]
    assert [r["split"] for r in choice] == ["u1, validation", "mean"]
    assert choice[0]["by users / EASE"] == choice[0]["by ratings / EASE"]
    assert choice[1]["by users / EASE"] == choice[0]["by users / EASE"]


def test_ablation_selection_chooses_within_the_grid(ml100k, monkeypatch):
    # Two shrinkages: each way of choosing returns one of them, scored as the fixed
    # point with those parameters scores.
    from sksvd.model_selection import train_test_split_interactions

    X_fit, X_val = train_test_split_interactions(sp.csr_matrix(ml100k.X), 0.2, random_state=1)
    grid = {"shrinkage": [2e4, 2e5], "low_pass": [0.0]}
    monkeypatch.setitem(bench_topn.SEARCH_GRIDS, "SVDRecommender", grid)
    rows = bench_topn_ablation.selection([("ml-100k", "all", X_fit, X_val, 0.25)],
                                         log=lambda *a: None)
    by_name = {bench_topn._fmt_params(p): p for p in bench_topn._product(grid)}
    assert len(by_name) == 2
    fixed = bench_topn.SksvdModel("SVDRecommender", "SVDRecommender", {})
    for how in ("users", "ratings"):
        assert rows[0][f"chosen by {how}"] in by_name
        params = by_name[rows[0][f"chosen by {how}"]]
        ndcg = bench_topn_ablation.evaluate(fixed, params, X_fit, X_val, "cpu")
        assert rows[0][f"by {how} / EASE"] == pytest.approx(ndcg / 0.25)
        assert rows[1][f"by {how} / EASE"] == rows[0][f"by {how} / EASE"]
