"""Scale-out: fit time against the number of workers (1, 2) on this machine.

Run ``python -m benchmarks.bench_scale_out [--quick] [--device cpu|cuda] [--nnz 1000000]
[--dask-nnz 20000000]``. With ``--device cuda`` the ranks are gloo processes sharing the
GPU (NCCL refuses two ranks on one device): a functional run, not a multi-GPU figure.

Two paths:

- **torch.distributed** (FunkSVD, AsySVD): ``sksvd.distributed.spawn`` starts a
  gloo group of 1 or 2 local processes (one torch thread each); every rank fits
  with ``distributed="auto"`` on its users (``u % world_size == rank``) and
  the item updates are all-reduced at every step. The time is the fit inside
  the ranks (the slowest rank), without process start-up, which is given
  apart. The baseline is the ordinary single-process fit with torch's default
  threads.
- **Dask** (SVDRecommender, randomized SVD block by block): a
  ``dask.distributed.LocalCluster`` of 1 or 2 single-threaded worker processes;
  the row blocks (scipy CSR chunks) are persisted on the workers before the
  timed fit. The baseline is the in-memory randomized fit.

The matrix is the harness's power-law synthetic (seed 0, ratings 1..5, 100
interactions per user, 4 users per item).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from . import _harness as h

NAME = "scale_out"


def _matrix(nnz):
    users = nnz // 100
    return h.cached_powerlaw_csr(users, max(users // 4, 1), nnz, seed=0)


def _rank_fit(est, X):
    """Runs on every rank of the group: the fit alone, timed."""
    from sksvd.distributed import get_rank

    t0 = time.perf_counter()
    est.fit(X)
    return {"rank": get_rank(), "seconds": time.perf_counter() - t0,
            "loss": float(est.loss_curve_[-1])}


def torch_rows(X, estimators, repeat):
    import torch
    from sklearn.base import clone

    from sksvd.distributed import spawn

    rows = []
    default_threads = torch.get_num_threads()
    for name, est in estimators.items():
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            single = clone(est).set_params(distributed=False)
            try:
                _, seconds = h.timed(single.fit, X, repeat=repeat)
            finally:
                torch.set_num_threads(default_threads)
            rows.append({"path": "torch.distributed", "model": name,
                         "workers": "1 (no group)", "threads_each": threads, "fit_s": seconds,
                         "startup_s": 0.0, "final_loss": single.loss_curve_[-1]})
        for n in (1, 2):
            best = None
            for _ in range(repeat):
                t0 = time.perf_counter()
                out = spawn(_rank_fit, n, (est, X), threads=1)
                wall = time.perf_counter() - t0
                fit_s = max(r["seconds"] for r in out)
                if best is None or fit_s < best[0]:
                    best = (fit_s, wall - fit_s, out[0]["loss"])
            rows.append({"path": "torch.distributed", "model": name, "workers": n,
                         "threads_each": 1, "fit_s": best[0], "startup_s": best[1],
                         "final_loss": best[2]})
        print(rows[-4:], flush=True)
    return rows


def _csr_dask_array(X, n_chunks):
    import dask
    import dask.array as da
    import scipy.sparse as sp

    bounds = np.linspace(0, X.shape[0], n_chunks + 1).astype(int)
    blocks = [da.from_delayed(dask.delayed(X[s:e].tocsr()), shape=(e - s, X.shape[1]),
                              dtype=X.dtype, meta=sp.csr_matrix((0, 0), dtype=X.dtype))
              for s, e in zip(bounds[:-1], bounds[1:], strict=True)]
    return da.concatenate(blocks, axis=0)


def dask_rows(X, rank, repeat, device="cpu"):
    import torch
    from distributed import Client, LocalCluster, wait

    from sksvd import SVDRecommender

    def make():
        return SVDRecommender(rank, algorithm="randomized", random_state=0, device=device)

    rows = []
    mem = make()
    _, seconds = h.timed(mem.fit, X, repeat=repeat)
    rows.append({"path": "dask", "model": f"SVDRecommender({rank}) randomized",
                 "workers": "1 (in memory)", "threads_each": torch.get_num_threads(),
                 "fit_s": seconds, "startup_s": 0.0,
                 "top_singular_value": float(mem.singular_values_[0])})
    for n in (1, 2):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                Xd = _csr_dask_array(X, 2 * n).persist()
                wait(Xd)
                startup = time.perf_counter() - t0
                client.run(lambda: __import__("torch").set_num_threads(1))
                est = make()
                _, seconds = h.timed(est.fit, Xd, repeat=repeat)
        rows.append({"path": "dask", "model": f"SVDRecommender({rank}) randomized",
                     "workers": n, "threads_each": 1, "fit_s": seconds,
                     "startup_s": startup,
                     "top_singular_value": float(est.singular_values_[0])})
        print(rows[-1], flush=True)
    return rows


NOTES = """\
**What this shows on 2 cores, and what it predicts.** This machine has 2 cores shared with
other work (load average about 7 during the recorded run), so "2 workers" means the same 2
cores used by two processes instead of one: no row can show more than a 2x gain from
parallelism, and single timings vary by 2-3x between runs (best of 2 here). Read ratios,
not seconds. The torch rows compare the plain single-process fit (1 and 2 torch threads)
with gloo groups of 1 and 2 processes of one thread each, at the same effective
`batch_size`; the final losses agree, as they must.

- **FunkSVD, default batch (4096 ratings)**: 2 ranks are no faster than 1, and slower than
  a plain one-thread process: every step all-reduces the whole item table
  (n_items x (k+2) floats) for only 2048 ratings of compute per rank. Communication-bound.
- **FunkSVD, batch 65536**: 2 ranks run about 2.6x faster than a group of 1. Part of that is
  not parallelism: a rank's step then has 32768 ratings, and a 32768-rating step costs less
  per rating on this CPU than a 65536 one (compare the plain single-process rows of the two
  batch sizes; the temporaries then fit the caches). At batch 32768, 2 ranks give 1.26x.
- **AsySVD (512 users per step)**: 2 ranks take about twice as long as 1: the step's compute
  is small here and it all-reduces 4 item tables (n_items x k floats each). The plain
  process with 2 torch threads is far slower than with 1 on this busy machine (torch's
  threaded sparse kernels stall when the cores are shared), which is why the ranks run one
  thread each.
- **Dask, randomized SVD of 20M ratings**: 2 single-thread workers are 1.3x faster than 1;
  both are slower than the in-memory solver on 2 threads, which has no task overhead and no
  tall-skinny QR to gather.

**Prediction for more machines.** For the gradient-trained models a ring all-reduce moves
about 2 x (item table) per step and per rank whatever the number of ranks W, while a rank's
compute per step shrinks as 1/W: the speed-up is near-linear only while a step's compute
(batch_size x k per rank for FunkSVD; the profiles of batch_size / W users for AsySVD)
dominates the all-reduce of the item table, i.e. with large effective batches (10^5-10^6
ratings, as on GPUs) and item tables small against them. With the default batches it is a
way to train on data one machine cannot hold, not a speed-up. The Dask SVD moves only
n_items x (k + oversamples) matrices per power iteration, independent of the number of
users, and its block products split evenly over the workers: it is the path that scales
out, once the blocks are large enough to amortise Dask's per-task overhead (here, 20M
ratings in 4 blocks already shows a gain on 2 shared cores)."""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="MovieLens-sized matrix (100k ratings), one run each")
    parser.add_argument("--nnz", type=int, default=1_000_000,
                        help="ratings of the matrix for FunkSVD and AsySVD")
    parser.add_argument("--dask-nnz", type=int, default=20_000_000,
                        help="ratings of the matrix for the Dask SVD")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("SKSVD_DEVICE", args.device)
    dev = args.device

    from sksvd import AsySVD, FunkSVD

    X = _matrix(100_000 if args.quick else args.nnz)
    estimators = {
        "FunkSVD sgd (12 epochs, batch 4096)": FunkSVD(loss="mse", random_state=0, device=dev),
        "FunkSVD sgd (12 epochs, batch 65536)": FunkSVD(
            loss="mse", batch_size=65536, learning_rate=0.01, random_state=0, device=dev),
        # the per-rank batch of the 2-worker run above, for the cache effect (see notes)
        "FunkSVD sgd (12 epochs, batch 32768)": FunkSVD(
            loss="mse", batch_size=32768, learning_rate=0.01, random_state=0, device=dev),
        "AsySVD mse (3 epochs, batch 512 users)": AsySVD(loss="mse", n_epochs=3, batch_size=512,
                                                          learning_rate=0.01, random_state=0,
                                                          device=dev),
    }
    rows = torch_rows(X, estimators, args.repeat)
    if not args.skip_dask:
        try:
            Xd = X if args.quick else _matrix(args.dask_nnz)
            rows += dask_rows(Xd, 64, args.repeat, dev)
        except ImportError as exc:
            print(f"dask rows skipped: {exc} (pip install sksvd[dask])")
    for r in rows:  # speed-up against the same path's 1-worker row
        base = next(b for b in rows if b["path"] == r["path"] and b["model"] == r["model"]
                    and b["workers"] == 1)
        r["speedup_vs_1_worker"] = base["fit_s"] / r["fit_s"]
    notes = (f"Matrices: power-law synthetic (seed 0); torch rows {X.shape[0]:,} users x "
             f"{X.shape[1]:,} items, {X.nnz:,} ratings"
             + ("" if args.skip_dask else f"; Dask rows {Xd.shape[0]:,} x {Xd.shape[1]:,}, "
                f"{Xd.nnz:,} ratings") + ".\n\n" + NOTES)
    text = h.write_results(NAME, rows, device=dev, notes=notes,
                           columns=["path", "model", "workers", "threads_each", "fit_s",
                                    "speedup_vs_1_worker", "startup_s", "final_loss",
                                    "top_singular_value"])
    print(text)


if __name__ == "__main__":
    main()
