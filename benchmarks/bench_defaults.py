"""Fit time of each recommender's defaults at scale, beside implicit's ALS with its defaults.

Run ``python -m benchmarks.bench_defaults [--quick] [--device cpu|cuda]``.

The matrix: ``harness.powerlaw_csr(200_000, 50_000, 20_000_000, seed=0)``
(ratings 1..5, power-law item popularity; ``--quick``: 20,000 x 5,000 with
1,000,000 entries). Each model is fitted once, with its defaults and
``random_state=0``, in a fresh ``forkserver`` child (its peak resident size
beyond the input is recorded): ``SVDRecommender()`` (rank
``min(200, n_users, n_items)``, spectral shrinkage), ``FunkSVD()`` (weighted
ALS over every entry), ``AsySVD()`` (shrunk-PureSVD start, BPR fine-tuning),
and implicit's ``AlternatingLeastSquares()`` (100 factors, 15 iterations,
BLAS on one thread as implicit recommends) on the same matrix as confidences.
The ratio of each fit time to implicit ALS's is recorded for the regression
guard.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

from benchmarks import _harness as H

FULL = (200_000, 50_000, 20_000_000)
QUICK = (20_000, 5_000, 1_000_000)
MODELS = ("SVDRecommender()", "FunkSVD()", "AsySVD()", "implicit ALS()")


def _fit(name, shape, device):
    X = H.cached_powerlaw_csr(*shape, seed=0)
    if name == "implicit ALS()":
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            use_gpu = False
            if str(device).startswith("cuda"):
                import implicit.gpu

                use_gpu = bool(implicit.gpu.HAS_CUDA)
            t0 = time.perf_counter()
            AlternatingLeastSquares(random_state=0, use_gpu=use_gpu).fit(
                X.astype("float32"), show_progress=False)
    else:
        import sksvd

        cls = getattr(sksvd, name[:-2])
        t0 = time.perf_counter()
        cls(random_state=0, device=device).fit(X)
    return {"fit_s": time.perf_counter() - t0, "nnz": int(X.nnz)}


def main(quick=False, device="cpu", timeout=3600):
    shape = QUICK if quick else FULL
    H.cached_powerlaw_csr(*shape, seed=0)  # drawn once, outside the timed children
    rows, fits = [], {}
    for name in MODELS:
        try:
            out = H.measure(_fit, name, shape, device, start_method="forkserver",
                            timeout=timeout)
        except (TimeoutError, RuntimeError) as exc:
            rows.append({"model": name, "fit_s": None, "note": str(exc)})
            print(rows[-1], flush=True)
            continue
        fits[name] = out["result"]["fit_s"]
        rows.append({"model": name, "users x items": f"{shape[0]:,} x {shape[1]:,}",
                     "nnz": out["result"]["nnz"], "fit_s": fits[name],
                     "peak_extra_mb": out["peak_extra_mb"]})
        print(rows[-1], flush=True)
    ratios = {f"{name} fit time / implicit ALS()": {"value": fits[name] / fits["implicit ALS()"],
                                                     "better": "lower"}
              for name in MODELS[:-1] if name in fits and "implicit ALS()" in fits}
    load = os.getloadavg()
    notes = (f"One fit per model in a fresh forkserver child, {device}; load average at the end "
             f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} on {os.cpu_count()} cores (timings on "
             "a shared machine are noisy). See the module docstring of "
             "`benchmarks/bench_defaults.py`.")
    name = "defaults_quick" if quick else "defaults"
    print(H.write_results(name, rows, device=device, notes=notes, ratios=ratios,
                          ratios_title="Ratios (fit time / implicit ALS())"))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per fit")
    args = ap.parse_args()
    main(quick=args.quick, device=args.device, timeout=args.timeout)
