"""Quality of ``batch_size="auto"``'s device batches against the CPU batch.

Run ``python -m benchmarks.bench_auto_batch [--quick] [--device cpu|cuda]``.

FunkSVD (SGD and Adam on the ratings) and AsySVD (its default ranking model
and its rating model) take mini-batches of ``_auto_batch_sizes["cpu"]`` on
the CPU; on a GPU ``batch_size="auto"`` takes larger ones (fewer, larger
steps per epoch, Adam's step scaled by the square root of the batch ratio)
but keeps a model's fewest steps per epoch (64 for FunkSVD, 8 for AsySVD;
:func:`sksvd.recommenders._sgd_base.auto_batch_size`). The default
``FunkSVD()`` trains by ALS, whose blocks do not depend on ``batch_size``.

Each model is fitted on MovieLens 100K ``uX.base`` (u1..u5; ``--quick``: u1)
three ways, on ``--device``:

- ``cpu batch``: ``batch_size`` the CPU batch, the learning rate unchanged
  (the fit a CPU user gets);
- ``auto on a GPU``: the batch and learning rate that ``"auto"`` chooses on a
  CUDA device for this matrix (computed by the estimator's own rule, whatever
  device runs the fit);
- ``device cap``: the device's largest batch with the learning rate scaled
  as ``"auto"`` would scale it, with no floor on the steps per epoch (what
  the rule guards against on small data).

Scores on ``uX.test``: RMSE for the rating models, NDCG@10 for AsySVD's
ranking default (relevant: test rating >= 4, training items excluded, users
without a relevant item skipped). The fits are the same computations on every
device up to floating-point order, so the CPU run measures the quality of the
device batches; the ``--device cuda`` run measures them where they run.
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import scipy.sparse as sp
import torch

from benchmarks import _harness as H

FOLDS = ("u1", "u2", "u3", "u4", "u5")
ARMS = ("cpu batch", "auto on a GPU", "device cap")


def _models():
    from sksvd import AsySVD, FunkSVD

    return {
        "FunkSVD(loss='mse')": (lambda **kw: FunkSVD(loss="mse", **kw), "rmse"),
        "FunkSVD(loss='mse', solver='adam')": (
            lambda **kw: FunkSVD(loss="mse", solver="adam", **kw), "rmse"),
        "AsySVD()": (lambda **kw: AsySVD(**kw), "ndcg@10"),
        "AsySVD(loss='mse')": (lambda **kw: AsySVD(loss="mse", **kw), "rmse"),
    }


def _batch_and_rate(make, arm, X):
    """``(batch_size, learning_rate)`` of one arm, by the estimator's own rule."""
    import sksvd.recommenders._sgd_base as base

    est = make(batch_size="auto")
    sizes = type(est)._auto_batch_sizes
    if arm == "cpu batch":
        return sizes["cpu"], est._learning_rate()
    if arm == "auto on a GPU":
        return est._batch_and_rate(torch.device("cuda"), est._batch_units(X))
    rule = base.auto_batch_size
    try:  # the device's largest batch whatever the size of X
        base.auto_batch_size = lambda device, sizes, n_units, *_: int(sizes["cuda"])
        return est._batch_and_rate(torch.device("cuda"), est._batch_units(X))
    finally:
        base.auto_batch_size = rule


def _score(est, metric, X, X_test):
    from sksvd.metrics import ndcg_at_k, rmse

    test = X_test.tocoo()
    if metric == "rmse":
        return rmse(test.data, est.predict_ratings(test.row, test.col))
    Y = sp.csr_matrix(((test.data >= 4).astype(np.float32), (test.row, test.col)),
                      shape=X_test.shape)
    Y.eliminate_zeros()
    users = np.flatnonzero(Y.getnnz(axis=1) > 0)
    ids, _ = est.recommend(X[users], k=10)
    return ndcg_at_k(Y[users], ids, k=10)


def main(quick=False, device="cpu"):
    from sksvd.datasets import load_movielens

    folds = FOLDS[:1] if quick else FOLDS
    data = {f: load_movielens("100k", fold=f) for f in folds}
    rows, ratios = [], {}
    for name, (make, metric) in _models().items():
        means = {}
        for arm in ARMS:
            scores, batches, rates, seconds = [], set(), set(), 0.0
            for f in folds:
                X, X_test = data[f].X_train, data[f].X_test
                base = functools.partial(make, random_state=0, device=device)
                batch, rate = _batch_and_rate(base, arm, X)
                batches.add(int(batch))
                rates.add(float(rate))
                t0 = time.perf_counter()
                est = base(batch_size=int(batch), learning_rate=rate).fit(X)
                seconds += time.perf_counter() - t0
                scores.append(float(_score(est, metric, X, X_test)))
            means[arm] = float(np.mean(scores))
            rows.append({"model": name, "arm": arm, "batch_size": sorted(batches),
                         "learning_rate": sorted(rates), "metric": metric,
                         "mean": means[arm], "per_fold": [round(v, 4) for v in scores],
                         "fit_s_total": seconds})
            print(rows[-1], flush=True)
        better = "lower" if metric == "rmse" else "higher"
        ratios[f"{name} {metric} auto on a GPU / cpu batch"] = {
            "value": means["auto on a GPU"] / means["cpu batch"], "better": better}
    notes = (f"MovieLens 100K {', '.join(folds)}; {len(folds)} folds; `random_state=0`; "
             "fits on " + device + ". `batch_size` and `learning_rate` list the values over "
             "the folds. See the module docstring of `benchmarks/bench_auto_batch.py` for the "
             "three arms.")
    name = "auto_batch_quick" if quick else "auto_batch"
    print(H.write_results(name, rows, device=device, notes=notes, ratios=ratios,
                          ratios_title="Ratios (auto on a GPU / cpu batch)"))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    main(quick=args.quick, device=args.device)
