"""Bounded memory: fit, transform and recommend on a 1,000,000 x 1,000,000 CSR.

Run ``python -m benchmarks.bench_memory [--quick]``.

The matrix has 5,000,000 interactions (uniformly placed, ratings 1..5, seed 0):
a dense users x items matrix would take 4 TB in float32. Each model is fitted,
folds in 10,000 users (``transform``) and recommends the top 10 for 10,000
users, in a fresh child process started with ``forkserver`` whose peak
resident size (VmHWM, the whole process: interpreter, torch, the matrix and
the model) is recorded. Target: under 3 GB peak RSS for each model.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

from benchmarks import _harness as H

N, NNZ, TARGET_MB = 1_000_000, 5_000_000, 3 * 1024


def _matrix(n, nnz):
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.integers(1, 6, nnz).astype(np.float32),
                       (rng.integers(0, n, nnz), rng.integers(0, n, nnz))), shape=(n, n))
    X.sum_duplicates()
    return X


def _run(name, n, nnz):
    import resource

    from sksvd import AsySVD, FunkSVD, SVDRecommender

    X = _matrix(n, nnz)
    models = {
        "SVDRecommender": lambda: SVDRecommender(32, algorithm="randomized", device="cpu",
                                                 random_state=0),
        "FunkSVD": lambda: FunkSVD(32, n_epochs=2, device="cpu", random_state=0),
        "AsySVD": lambda: AsySVD(32, n_epochs=2, device="cpu", random_state=0),
    }
    t0 = time.perf_counter()
    est = models[name]().fit(X)
    fit_s = time.perf_counter() - t0
    rows = X[:10_000]
    t0 = time.perf_counter()
    W = est.transform(rows)
    ids, _ = est.recommend(rows, k=10)
    use_s = time.perf_counter() - t0
    assert W.shape == (10_000, 32) and ids.shape == (10_000, 10)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"fit_s": fit_s, "transform_recommend_s": use_s, "peak_rss_mb": peak_mb}


MODELS = ("SVDRecommender", "FunkSVD", "AsySVD")


def _previous_rows(name):
    """Rows of an earlier run of this benchmark (kept for the models not rerun now)."""
    import json

    path = H.RESULTS / f"{name}.json"
    if not path.exists():
        return []
    return json.loads(path.read_text()).get("rows", [])


def main(quick=False, device="cpu", models=MODELS):
    n, nnz = (200_000, 1_000_000) if quick else (N, NNZ)
    result_name = "memory_quick" if quick else "memory"
    rows = [r for r in _previous_rows(result_name) if r.get("model") not in models]
    for name in models:
        out = H.measure(_run, name, n, nnz, start_method="forkserver", timeout=1800)
        r = out["result"]
        rows.append({"model": name, "users x items": f"{n:,} x {n:,}", "interactions": nnz,
                     "fit_s": r["fit_s"], "transform+recommend_10k_s": r["transform_recommend_s"],
                     "peak_rss_mb": r["peak_rss_mb"], "target_mb": TARGET_MB,
                     "passed": r["peak_rss_mb"] < TARGET_MB,
                     "date": time.strftime("%Y-%m-%d %H:%M")})
        print(rows[-1], flush=True)
    notes = ("Peak RSS is the child's whole-process high-water mark (interpreter, torch, the "
             "CSR matrix and the model included), measured in a fresh forkserver child. "
             "Ranks 32, FunkSVD/AsySVD 2 epochs; transform and recommend for 10,000 users. "
             "`--models` reruns some models and keeps the other rows from the last run: "
             "each row's own date is in its `date` column.")
    rows.sort(key=lambda r: MODELS.index(r["model"]))
    print(H.write_results(result_name, rows, device=device, notes=notes))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                    help="models to (re)run; rows of the others are kept from the last run")
    args = ap.parse_args()
    main(quick=args.quick, device=args.device, models=tuple(args.models))
