"""SVDRecommender's options one at a time, beside EASE, on validation splits only.

Run ``python -m benchmarks.bench_topn_ablation [--quick] [--device cpu|cuda]``; writes
``results/topn_ablation.{json,md}`` (``--quick``: ml-100k ``u1`` and three variants, to
``topn_ablation_quick``).

Every variant is one fixed point (no search) fitted on the validation splits of
:mod:`benchmarks.bench_topn` (``--validation``: each training part split again per
user 80/20; the test parts are never read) and scored by the same protocol, as
NDCG@10 relative to EASE tuned on the same training matrix as in that benchmark.
It measures how much each option is worth, and how far this family of spectral
models gets above EASE when nothing is left to chance in the choice of its
parameters; :mod:`benchmarks.bench_topn` measures what a grid search finds.

Besides the estimator's own parameters, three variants change the scores only,
to test ideas from the literature before they would enter the library:

* ``zero_diagonal``: EASE's constraint ``diag(W) = 0`` (Steck 2019) on the
  model's item-item weights ``W``. For a full-rank model with the same ridge
  penalty ``lambda`` on every item, ``W = V diag(w) V^T`` with ``w = s^2 / (s^2 +
  lambda)``, EASE's weights are ``W_ij / (1 - W_jj)`` off the diagonal (``P = (X^T
  X + lambda I)^-1 = (I - W) / lambda`` and ``B = I - P diag(1 / diag(P))``), so
  the zero-diagonal model divides each unseen item's score by ``1 - W_jj``; with a
  per-item penalty ``D`` the same holds in the scaled space, which is the full-
  rank EDLAE of Steck, "Autoencoders that don't overfit towards the identity"
  (NeurIPS 2020). :func:`zero_diagonal_scale` computes it from the factors.
* ``popularity_output``: scores multiplied by ``(1 + n_j)^gamma``.
* ``drop_below``: ratings below a threshold enter the model with weight ``1e-3``
  (still seen, so still excluded from the lists).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

from . import _harness as h
from . import bench_topn as bt

NAME = "topn_ablation"
DATASETS = ("ml-100k", "ml-latest-small")
# The grid point that scores best on ml-latest-small here; the variants change one thing each.
REFERENCE = {"n_components": None, "rating_power": 2.0, "user_weighting": 0.25,
             "shrinkage": 2e4, "item_penalty": 1.0, "low_pass": 0.3}
QUICK_VARIANTS = ("reference", "low_pass=0", "zero diagonal")


def variants():
    """(name, parameters, score-side options) of every variant, the reference first."""
    out = [("reference", {}, {})]
    grid = bt.SEARCH_GRIDS["SVDRecommender"]
    for lam in grid["shrinkage"]:
        for c in grid["item_penalty"]:
            for lp in grid["low_pass"]:
                p = {"shrinkage": lam, "item_penalty": c, "low_pass": lp}
                if any(REFERENCE[k] != v for k, v in p.items()):
                    out.append((f"grid point {lam:g}, {c:g}, {lp:g}", p, {}))
    for key, values in (("low_pass", (0.0, 0.5)), ("low_pass_rank", (5, 10, 40, 80)),
                        ("user_weighting", (0.0, 0.5)), ("item_penalty", (0.0, 2.0)),
                        ("shrinkage", (8e3, 5e4)), ("popularity_scaling", (0.1, 0.25)),
                        ("n_components", (200,))):
        out += [(f"{key}={v:g}", {key: v}, {}) for v in values]
    # rating_power changes the units of the squared singular values: lambda scaled with it
    out += [("rating_power=1, shrinkage=1.5e3", {"rating_power": 1.0, "shrinkage": 1.5e3}, {}),
            ("rating_power=1.5, shrinkage=6e3", {"rating_power": 1.5, "shrinkage": 6e3}, {}),
            ("rating_power=3, shrinkage=1e5", {"rating_power": 3.0, "shrinkage": 1e5}, {})]
    out += [("zero diagonal", {}, {"zero_diagonal": True}),
            ("zero diagonal, low_pass=0", {"low_pass": 0.0}, {"zero_diagonal": True}),
            ("zero diagonal, low_pass=0, item_penalty=2, shrinkage=5e4",
             {"low_pass": 0.0, "item_penalty": 2.0, "shrinkage": 5e4}, {"zero_diagonal": True}),
            ("popularity_output=-0.05", {}, {"popularity_output": -0.05}),
            ("popularity_output=0.05", {}, {"popularity_output": 0.05}),
            ("drop_below=3", {}, {"drop_below": 3.0})]
    return out


def zero_diagonal_scale(rec):
    """``1 / (1 - W_jj)`` for each item: the column scale that gives the fitted
    :class:`~sksvd.SVDRecommender`'s item-item weights ``W`` a zero diagonal as
    in EASE (see the module docstring).

    ``W = diag(item_scale_) V diag(w) V^T diag(item_output_scale_)``, with ``V``
    the unit singular vectors and ``w = component_weights_``.
    """
    out = rec.item_output_scale_.astype(np.float64)
    V = rec.item_factors_.astype(np.float64) / out[:, None]
    diag = rec.item_scale_ * out * (np.square(V) @ rec.component_weights_.astype(np.float64))
    if np.any(diag >= 1):
        raise ValueError(f"zero_diagonal: max W_jj = {diag.max():.3f} >= 1 (a low-pass lift "
                         "above the ridge weights); not an EASE-type model")
    return 1.0 / (1.0 - diag)


class Variant(bt.Model):
    """One variant as a model of :mod:`benchmarks.bench_topn`: ``SVDRecommender`` at
    ``REFERENCE`` updated by ``params``, its scores changed by ``score``."""

    def __init__(self, score):
        self.score = score

    def fit(self, X, params, device):
        from sksvd import SVDRecommender

        X_in = _drop_below(X, self.score.get("drop_below"))
        rec = SVDRecommender(**{**REFERENCE, **params}, random_state=0, device=device).fit(X_in)
        col = np.ones(X.shape[1])
        if self.score.get("zero_diagonal"):
            col *= zero_diagonal_scale(rec)
        if "popularity_output" in self.score:
            n = np.bincount(X.indices, minlength=X.shape[1])
            col *= (1.0 + n) ** float(self.score["popularity_output"])
        return rec, rec.item_factors_ * col.astype(rec.item_factors_.dtype)[:, None]

    def recommend(self, state, X_rows, rows, k, device):
        rec, V = state
        U = rec.transform(_drop_below(X_rows, self.score.get("drop_below")))
        return bt._rank_factors(U, V, X_rows, k, device)


def _drop_below(X, threshold):
    if threshold is None:
        return X
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    X.data[X.data < threshold] = 1e-3
    return X


def evaluate(model, params, X_fit, X_val, device):
    """NDCG@10 of ``model`` fitted with ``params`` on one validation split, by
    :func:`benchmarks.bench_topn.evaluate_split` (the same protocol and top-k)."""
    state = model.fit(X_fit, params, device)
    return bt.evaluate_split(model, state, X_fit, X_val, device, ks=(10,))[0]["ndcg@10"]


def ease_reference(X_fit, X_val, device):
    """EASE tuned on ``X_fit`` alone, exactly as in :mod:`benchmarks.bench_topn`."""
    model = bt.EASE()
    params, _ = bt.tune(model, X_fit, device, quick=False, log=lambda *a: None)
    return evaluate(model, params, X_fit, X_val, device), params["lambda"]


def run(device="cpu", log=print, datasets=DATASETS, variant_list=None, quick=False):
    """Rows (one per variant: mean ratio to EASE per data set) and per-split rows."""
    variant_list = variants() if variant_list is None else variant_list
    splits, ease_rows = [], []
    for ds in datasets:
        for split, X_fit, X_val in bt.splits(ds, quick=quick, validation=True):
            e, lam = ease_reference(X_fit, X_val, device)
            splits.append((ds, split, X_fit, X_val, e))
            ease_rows.append({"dataset": ds, "split": split, "EASE ndcg@10": e, "lambda": lam})
            log(f"[{NAME}] {ds} {split}: EASE {e:.4f} (lambda {lam:g})")
    rows = []
    for name, params, score in variant_list:
        row = {"variant": name}
        for ds in datasets:
            ratios = [evaluate(Variant(score), params, X_fit, X_val, device) / e
                      for d, _, X_fit, X_val, e in splits if d == ds]
            row[f"{ds} / EASE"] = float(np.mean(ratios))
            row[f"{ds} per split"] = " ".join(f"{r:.3f}" for r in ratios)
        rows.append(row)
        log(f"[{NAME}] {name}: " + ", ".join(f"{ds} {row[f'{ds} / EASE']:.4f}"
                                             for ds in datasets))
    return rows, ease_rows


def main(device="cpu", log=print, quick=False):
    t0 = time.perf_counter()
    if quick:
        rows, ease_rows = run(device, log, datasets=("ml-100k",), quick=True,
                              variant_list=[v for v in variants() if v[0] in QUICK_VARIANTS])
    else:
        rows, ease_rows = run(device, log)
    notes = (
        "**Validation splits only: the test parts are not read.** Each training part "
        "of `benchmarks.bench_topn` (ml-100k `u1.base`..`u5.base`; the 80% parts of "
        "ml-latest-small, seeds 0, 1, 2) is split again per user 80/20 "
        f"(`random_state={bt.VALIDATION_SEED}`). Every variant is one fixed point of "
        "`SVDRecommender`, fitted on the 80% and scored on the 20% (relevant: rated >= "
        f"{bt.RELEVANCE:g}; seen items excluded; users with no relevant item skipped), "
        "as NDCG@10 divided by EASE's on the same split (EASE's lambda chosen on a "
        "further split of the 80%, as in `bench_topn`). Columns: the mean ratio over "
        "the splits, then each split's ratio. The reference point is "
        + ", ".join(f"`{k}={v!r}`" for k, v in REFERENCE.items())
        + "; every other row changes what its name says. Score-side variants "
        "(`zero diagonal`, `popularity_output`, `drop_below`) are described in the "
        "module docstring. Every row is one more look at the same splits, so the best "
        "row is an optimistic estimate of its point, and differences of about 1% are "
        f"within their noise. Run time {time.perf_counter() - t0:.0f} s.")
    h.write_results(f"{NAME}_quick" if quick else NAME, rows, device=device, notes=notes,
                    tables={"EASE on each validation split": ease_rows},
                    extra={"reference": REFERENCE})
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="ml-100k u1 and three variants")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    main(device=args.device, quick=args.quick)
