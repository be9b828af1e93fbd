"""Rating prediction: FunkSVD against Surprise on the MovieLens 100K folds, and a 20M-rating epoch.

Quality (default): for each official fold uX (train ``uX.base``, test ``uX.test``)

* ``FunkSVD(loss="mse")`` (the rating model) with its defaults, and Surprise
  ``SVD()``, ``SVDpp()``, ``BaselineOnly()`` with theirs (Surprise clips its
  predictions to [1, 5]; ours are reported unclipped); FunkSVD with its Adam
  and ALS solvers at one setting each (``OTHER_SOLVERS``);
* ``FunkSVD`` and Surprise ``SVD`` "tuned": each grid below is fitted on 90% of
  ``uX.base`` and scored (RMSE) on the other 10% (``train_test_split_interactions``,
  seed 0); the best setting is refitted on all of ``uX.base`` and scored on
  ``uX.test``. The test fold is never seen by the selection.

The default fits of FunkSVD and Surprise SVD are timed in the same run (best of
``--repeat``), and their ratio is the speed figure; ``ratings/s`` is training
ratings x epochs / fit seconds.

ml-latest-small (``--latest-small``): ``FunkSVD(loss="mse")``,
``AsySVD(loss="mse")`` and Surprise ``SVD()`` with their defaults on a per-user
80/20 split for three seeds (``rating_latest_small``).

Scale (``--scale``): one FunkSVD epoch over 20M ratings (200,000 users x 50,000
items, power-law popularity, seed 0) at 128 factors, timed per epoch from the
epoch callback.

Usage::

    python benchmarks/bench_rating.py                 # 5 folds, full grids
    python benchmarks/bench_rating.py --quick         # folds u1, u2, small grids, no SVDpp
    python benchmarks/bench_rating.py --scale-only --device cpu
    python benchmarks/bench_rating.py --scale         # both
    python benchmarks/bench_rating.py --latest-small  # the defaults on ml-latest-small
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import powerlaw_csr, timed, write_results  # noqa: E402

from sksvd import FunkSVD  # noqa: E402
from sksvd.datasets import load_movielens  # noqa: E402
from sksvd.metrics import mae, rmse  # noqa: E402
from sksvd.model_selection import train_test_split_interactions  # noqa: E402

# FunkSVD's grid: wide factors started small (init_std 0.01), about 60 epochs at lr 0.005,
# regularisation near 0.06. Placed by exploring validation splits of u1..u5.base only (never
# uX.test): at lr 0.005 the validation RMSE is U-shaped in the epochs (SGD from a small start
# stops before over-fitting), more factors help when init_std shrinks with them, ALS, Adam,
# learning-rate decay, a separate bias penalty and larger init_std did not help. 12 settings,
# against Surprise's 24 below.
FUNK_GRID = {
    "n_components": [256, 512],
    "n_epochs": [50, 70],
    "learning_rate": [0.005],
    "regularization": [0.05, 0.06, 0.07],
    "init_std": [0.01],
}
# Surprise SVD's grid: its validation optimum lies inside it
# (checked on the u1..u3.base validation splits: 120 epochs, 500 factors or reg 0.08 are
# worse than 80 epochs, 100 factors, reg 0.1).
SVD_GRID = {
    "n_factors": [50, 100, 200],
    "n_epochs": [40, 80],
    "lr_all": [0.005, 0.01],
    "reg_all": [0.1, 0.15],
}
# The other solvers at one setting each, picked on the validation split of u1.base.
OTHER_SOLVERS = {
    "FunkSVD(solver='adam')": dict(solver="adam", learning_rate=0.005, regularization=0.1,
                                   n_epochs=20),
    "FunkSVD(solver='als')": dict(solver="als", regularization=0.15, n_epochs=10),
}
QUICK_FUNK_GRID = {"n_components": [32, 64], "n_epochs": [15, 30], "learning_rate": [0.02],
                   "regularization": [0.05, 0.08]}
QUICK_SVD_GRID = {"n_factors": [50, 100], "n_epochs": [20, 40], "lr_all": [0.005, 0.01],
                  "reg_all": [0.05]}


def grid(spec):
    """Every point of the grid ``spec`` (name -> values), by scikit-learn's ParameterGrid."""
    from sklearn.model_selection import ParameterGrid

    return list(ParameterGrid(spec))


# ----------------------------------------------------------------------------- Surprise
def surprise_trainset(X, rating_scale=(1, 5)):
    import pandas as pd
    from surprise import Dataset, Reader

    coo = X.tocoo()
    df = pd.DataFrame({"u": coo.row, "i": coo.col, "r": coo.data.astype(float)})
    return Dataset.load_from_df(df, Reader(rating_scale=rating_scale)).build_full_trainset()


def surprise_predict(algo, X):
    coo = X.tocoo()
    est = np.array([algo.predict(int(u), int(i), clip=True).est
                    for u, i in zip(coo.row, coo.col, strict=True)])
    return coo.data, est


def funk_predict(est, X):
    coo = X.tocoo()
    return coo.data, est.predict_ratings(coo.row, coo.col)


# ----------------------------------------------------------------------------- selection
def select(make_fit, predict, configs, X_base):
    """Fit each config on 90% of X_base, score RMSE on the rest; return (best, table)."""
    X_tr, X_val = train_test_split_interactions(X_base, test_size=0.1, random_state=0,
                                                  mode="global")
    scored = []
    for cfg in configs:
        model = make_fit(cfg, X_tr)
        y, p = predict(model, X_val)
        scored.append((rmse(y, p), cfg))
    scored.sort(key=lambda t: t[0])
    return scored[0][1], scored[0][0]


def fit_funk(cfg, X, device):
    return FunkSVD(**cfg, loss="mse", random_state=0, device=device).fit(X)


def fit_surprise_svd(cfg, X):
    from surprise import SVD

    algo = SVD(**cfg, random_state=0)
    algo.fit(surprise_trainset(X))
    return algo


def run_fold(fold, args, funk_grid, svd_grid):
    """All models on one fold; returns (rows, choice)."""
    from surprise import SVD, BaselineOnly, SVDpp

    ds = load_movielens("100k", fold=fold, data_home=args.data_home)
    X_base, X_test = ds.X_train, ds.X_test
    n_train = X_base.nnz
    ts = surprise_trainset(X_base)
    rows = []

    def add(model, fit_s, y, p, epochs=None):
        rows.append({"model": model, "fold": fold, "rmse": rmse(y, p), "mae": mae(y, p),
                     "fit_s": fit_s,
                     "ratings_per_s": n_train * epochs / fit_s if epochs else None})

    # The two default fits, each timed in this run (best of --repeat).
    svd, t_svd = timed(lambda: SVD(random_state=0).fit(ts), repeat=args.repeat)
    funk, t_funk = timed(lambda: FunkSVD(loss="mse", random_state=0,
                                         device=args.device).fit(X_base),
                         repeat=args.repeat)
    add("Surprise SVD (defaults)", t_svd, *surprise_predict(svd, X_test), epochs=20)
    add("FunkSVD(loss='mse') (defaults)", t_funk, *funk_predict(funk, X_test),
        epochs=funk.n_epochs)
    base, t_base = timed(lambda: BaselineOnly(verbose=False).fit(ts))
    add("Surprise BaselineOnly", t_base, *surprise_predict(base, X_test))
    for label, cfg in OTHER_SOLVERS.items():
        other, t_other = timed(lambda cfg=cfg: fit_funk(cfg, X_base, args.device))
        add(label, t_other, *funk_predict(other, X_test), epochs=cfg["n_epochs"])
    if not args.quick:
        pp, t_pp = timed(lambda: SVDpp(random_state=0).fit(ts))
        add("Surprise SVDpp (defaults)", t_pp, *surprise_predict(pp, X_test), epochs=20)

    # Tuned on a validation split of uX.base only.
    t0 = time.perf_counter()
    cfg_f, val_f = select(lambda c, X: fit_funk(c, X, args.device), funk_predict,
                          funk_grid, X_base)
    sel_f = time.perf_counter() - t0
    tuned, t_tuned = timed(lambda: fit_funk(cfg_f, X_base, args.device))
    add("FunkSVD (tuned)", t_tuned, *funk_predict(tuned, X_test), epochs=cfg_f["n_epochs"])
    t0 = time.perf_counter()
    cfg_s, val_s = select(fit_surprise_svd, surprise_predict, svd_grid, X_base)
    sel_s = time.perf_counter() - t0
    stuned, t_stuned = timed(lambda: fit_surprise_svd(cfg_s, X_base))
    add("Surprise SVD (tuned)", t_stuned, *surprise_predict(stuned, X_test),
        epochs=cfg_s["n_epochs"])
    choice = {"fold": fold, "funk_choice": str(cfg_f), "funk_val_rmse": val_f,
              "funk_search_s": sel_f, "svd_choice": str(cfg_s), "svd_val_rmse": val_s,
              "svd_search_s": sel_s}
    print(f"{fold}: " + ", ".join(f"{r['model']} {r['rmse']:.4f}" for r in rows), flush=True)
    return rows, choice


def run_quality(args):
    load = os.getloadavg()[0]
    folds = ["u1", "u2"] if args.quick else ["u1", "u2", "u3", "u4", "u5"]
    funk_grid = grid(QUICK_FUNK_GRID if args.quick else FUNK_GRID)
    svd_grid = grid(QUICK_SVD_GRID if args.quick else SVD_GRID)
    rows, choices = [], []
    for fold in folds:
        fold_rows, choice = run_fold(fold, args, funk_grid, svd_grid)
        rows += fold_rows
        choices.append(choice)

    summary = []
    for model in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == model]
        rps = [r["ratings_per_s"] for r in rs if r["ratings_per_s"]]
        summary.append({"model": model, "mean_rmse": float(np.mean([r["rmse"] for r in rs])),
                        "mean_mae": float(np.mean([r["mae"] for r in rs])),
                        "mean_fit_s": float(np.mean([r["fit_s"] for r in rs])),
                        "ratings_per_s": float(np.mean(rps)) if rps else None})
    by = {s["model"]: s for s in summary}
    funk_d, svd_d = by["FunkSVD(loss='mse') (defaults)"], by["Surprise SVD (defaults)"]
    funk_t = by["FunkSVD (tuned)"]
    svd_t = by["Surprise SVD (tuned)"]
    checks = {
        "tuned FunkSVD RMSE below tuned Surprise SVD by >= 0.005":
            svd_t["mean_rmse"] - funk_t["mean_rmse"] >= 0.005,
        "tuned FunkSVD RMSE below Surprise SVD defaults by >= 0.005":
            svd_d["mean_rmse"] - funk_t["mean_rmse"] >= 0.005,
        "default FunkSVD RMSE below Surprise SVD defaults":
            funk_d["mean_rmse"] < svd_d["mean_rmse"],
        "default FunkSVD fit >= 2x faster than Surprise SVD default fit":
            svd_d["mean_fit_s"] / funk_d["mean_fit_s"] >= 2.0,
    }
    speed = svd_d["mean_fit_s"] / funk_d["mean_fit_s"]
    notes = (
        f"Folds {', '.join(folds)} of MovieLens 100K. Default-fit speed ratio (Surprise SVD / "
        f"FunkSVD, best of {args.repeat} per fold, same run): {speed:.2f}x. "
        f"Tuned RMSE gap to Surprise SVD defaults: {svd_d['mean_rmse'] - funk_t['mean_rmse']:.4f}; "
        f"to Surprise SVD tuned: {by['Surprise SVD (tuned)']['mean_rmse'] - funk_t['mean_rmse']:.4f}."
        "\nChecks: " + "; ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items())
        + f"\nFunkSVD grid: {FUNK_GRID if not args.quick else QUICK_FUNK_GRID}; "
        f"Surprise SVD grid: {SVD_GRID if not args.quick else QUICK_SVD_GRID}. "
        f"Adam and ALS rows: {OTHER_SOLVERS} (set on the u1.base validation split). "
        "CPU timings on a machine shared with other jobs are noisy: load average (1 min) "
        f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} "
        "cores."
    )
    print(write_results("rating", summary, device=args.device, notes=notes,
                        extra={"checks": checks, "speed_ratio": speed},
                        tables={"Per fold": rows, "Hyper-parameters chosen (validation split "
                                "of uX.base)": choices}))


# ----------------------------------------------------------------------------- latest-small
LATEST_SEEDS = (0, 1, 2)


def run_latest_small(args):
    """The rating models' defaults against Surprise SVD's on ml-latest-small (per-user 80/20)."""
    from surprise import SVD

    from sksvd import AsySVD

    X = load_movielens("latest-small", data_home=args.data_home).X
    scale = (float(X.data.min()), float(X.data.max()))
    makers = {"FunkSVD(loss='mse') (defaults)":
              lambda: FunkSVD(loss="mse", random_state=0, device=args.device),
              "AsySVD(loss='mse') (defaults)":
              lambda: AsySVD(loss="mse", random_state=0, device=args.device)}
    rows = []
    for seed in LATEST_SEEDS:
        X_train, X_test = train_test_split_interactions(X, 0.2, random_state=seed)
        for name, make in makers.items():
            model, t = timed(make().fit, X_train)
            y, p = funk_predict(model, X_test)
            rows.append({"model": name, "seed": seed, "rmse": rmse(y, p), "mae": mae(y, p),
                         "fit_s": t})
        ts = surprise_trainset(X_train, scale)
        svd = SVD(random_state=0)
        _, t = timed(svd.fit, ts)
        y, p = surprise_predict(svd, X_test)
        rows.append({"model": "Surprise SVD (defaults)", "seed": seed, "rmse": rmse(y, p),
                     "mae": mae(y, p), "fit_s": t})
        print(rows[-3:], flush=True)
    summary = [{"model": m, "mean_rmse": float(np.mean([r["rmse"] for r in rows if r["model"] == m])),
                "mean_mae": float(np.mean([r["mae"] for r in rows if r["model"] == m])),
                "mean_fit_s": float(np.mean([r["fit_s"] for r in rows if r["model"] == m]))}
               for m in dict.fromkeys(r["model"] for r in rows)]
    by = {s["model"]: s["mean_rmse"] for s in summary}
    svd_rmse = by["Surprise SVD (defaults)"]
    checks = {f"{m} RMSE below Surprise SVD defaults": by[m] < svd_rmse for m in makers}
    notes = (
        "MovieLens latest-small (ratings 0.5-5 in half steps), a per-user 80/20 split "
        "(`train_test_split_interactions(X, 0.2, random_state=seed)`) for the seeds "
        f"{', '.join(map(str, LATEST_SEEDS))}; RMSE and MAE on the held-out 20%. Every model "
        f"with its defaults; Surprise clips to the rating scale {scale}, the sksvd rating "
        "models to the range of the training ratings (the same here). Fit times of one run "
        "on a shared machine (noisy)."
        "\nChecks: " + "; ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items()))
    print(write_results("rating_latest_small", summary, device=args.device, notes=notes,
                        extra={"checks": checks}, tables={"Per seed": rows}))


# ----------------------------------------------------------------------------- scale
def scale_fit(X, batch_size, n_epochs, device):
    """Fit at 128 factors, recording the time at the end of each epoch."""
    import torch

    stamps = []

    def stamp(epoch, loss):
        # called inside fit, so get_num_threads() is what the epoch ran on
        stamps.append((time.perf_counter(), time.process_time(), torch.get_num_threads()))

    est = FunkSVD(n_components=128, n_epochs=n_epochs, batch_size=batch_size, loss="mse",
                  random_state=0, device=device, callback=stamp)
    t0 = (time.perf_counter(), time.process_time(), 0)
    est.fit(X)
    return est, t0, stamps, time.perf_counter() - t0[0]


def run_scale(args):
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    X = powerlaw_csr(200_000, 50_000, 20_000_000, seed=0)
    gen_s = time.perf_counter() - t0
    device = args.device
    rows = []
    for batch_size in args.scale_batch:
        est, t0, stamps, total = scale_fit(X, batch_size, args.scale_epochs, device)
        wall, cpu, _ = np.diff(np.array([t0] + stamps), axis=0).T
        # the first interval also holds the setup (validation, transfer, init)
        best = int(np.argmin(wall[1:])) + 1 if len(wall) > 1 else 0
        per_epoch = float(wall[best])
        rows.append({"n_ratings": X.nnz, "n_components": 128, "batch_size": batch_size,
                     "device": device, "torch_threads_in_fit": int(stamps[-1][2]),
                     "s_per_epoch": per_epoch, "cpu_s_per_epoch": float(cpu[best]),
                     "ratings_per_s": X.nnz / per_epoch,
                     "first_epoch_with_setup_s": float(wall[0]), "fit_s": total,
                     "final_loss": est.loss_curve_[-1]})
        print(rows[-1], flush=True)
    target = 0.25 if str(device).startswith("cuda") else 20.0
    notes = (f"200,000 x 50,000, 20M ratings (power law, seed 0; generated in {gen_s:.1f} s). "
             f"Target: < {target} s per epoch on {device}. s_per_epoch is the fastest epoch "
             "after the first (the first also holds the setup); cpu_s_per_epoch is the process "
             "CPU time of that epoch (all threads), the wall time it would take alone on the "
             "machine when it runs on one thread. Load average (1 min) at the start: "
             f"{load:.1f}, at the end: {os.getloadavg()[0]:.1f}, on {os.cpu_count()} cores.")
    print(write_results("rating_scale", rows, device=device, notes=notes))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="folds u1, u2; small grids; no SVDpp")
    ap.add_argument("--scale", action="store_true", help="also time the 20M-rating epoch")
    ap.add_argument("--scale-only", action="store_true", help="only the 20M-rating epoch")
    ap.add_argument("--scale-epochs", type=int, default=3)
    ap.add_argument("--scale-batch", type=int, nargs="+", default=[4096],
                    help="batch sizes to time (on a GPU use e.g. 262144)")
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats of the default fits")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-home", default=None)
    ap.add_argument("--latest-small", action="store_true",
                    help="only the defaults against Surprise SVD on ml-latest-small")
    args = ap.parse_args(argv)
    # the shared ml-100k copy has one malformed line in u.item (titles only; not used here)
    warnings.filterwarnings("ignore", message=".*u.item.*")
    if args.latest_small:
        run_latest_small(args)
        return
    if not args.scale_only:
        run_quality(args)
    if args.scale or args.scale_only:
        run_scale(args)


if __name__ == "__main__":
    main()
