"""Top-N recommendation: quality on MovieLens beside EASE and implicit, and PureSVD speed.

Run ``python -m benchmarks.bench_topn [--quick] [--device cpu|cuda] [--speed | --no-speed]
[--validation]``.

Quality: every model is ranked by the one top-k routine
(:func:`sksvd._topk.topk_items`, directly or through ``recommend``) and scored
by the one metric code (:func:`sksvd.metrics.topk_metrics`); the protocol is
:data:`PROTOCOL`. The sksvd recommenders appear with their defaults (no
tuning), PureSVD at fixed ranks, and the best point of a
:class:`~sklearn.model_selection.GridSearchCV` on the training matrix; EASE
(Steck 2019) is the closed-form reference. Speed: :func:`speed` on a
200,000 x 50,000 power-law CSR with 20M interactions.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import scipy.sparse as sp

from . import _harness as h

NAME = "topn"
K_EVAL = (10, 20)
RANKING = ("ndcg", "recall", "precision", "map")
RELEVANCE = 4.0
FOLDS = ("u1", "u2", "u3", "u4", "u5")
SEEDS = (0, 1, 2)
MATCH_TOL = 1e-3
DEFAULTS = ("SVDRecommender()", "FunkSVD()", "AsySVD()")
PURESVD_RANKS = (20, 50, 100)
EASE_GRID = (100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0)
SEARCH_GRIDS = {
    "SVDRecommender": {"n_components": [None], "rating_power": [2.0], "user_weighting": [0.25],
                       "shrinkage": [2e4, 5e4], "item_penalty": [1.0, 2.0],
                       "low_pass": [0.15, 0.3]},
    "FunkSVD": {"n_components": [32, 64], "regularization": [0.03, 0.06],
                "unobserved_weight": [0.1, 0.25, 0.5]},
    "AsySVD": {"n_components": [64, 128], "init_shrinkage": [3000.0, 10000.0, 30000.0]},
}
SEARCH_FOLDS = 5
EASE_MARGIN = 1.02
FIT_LIMIT_S = 3.0
NEW_USERS = "ml-100k new users"
NEW_USER_FOLDS = 5
VALIDATION_SEED = 7

PROTOCOL = f"""\
**Top-N protocol.** MovieLens 100K, official folds u1..u5: each model is
trained on `uX.base` (ratings as stored, 1..5) and evaluated on `uX.test`.
MovieLens latest-small: a per-user 80/20 split of each user's ratings
(`train_test_split_interactions(X, 0.2, random_state=seed)`) for the seeds
{", ".join(map(str, SEEDS))}, train on the 80%; its means are over the three seeds.
*Relevant* items of a user are its test items rated >= {RELEVANCE:g}. Items the
user rated in the training matrix are *excluded* from its list (set to -inf
before the top-k). Users with no relevant test item are *skipped* (not in the
means; counted as `n_skipped`). Every model is ranked by the same top-k
routine (`sksvd._topk.topk_items`: EASE's, implicit's and scipy's factors go
through it too; the sksvd models through their own `recommend`, which folds
the user's training row in) and scored by the same code
(`sksvd.metrics.topk_metrics`): NDCG (binary gains, log2 discount, ideal DCG over
min(|R_u|, k) places), recall (hits / |R_u|), precision (hits / k), MAP (sum of
precision at each hit / min(|R_u|, k)), at 10 and 20, and catalogue coverage
(share of items in at least one evaluated user's top-k).

**Rows.** `SVDRecommender()`, `FunkSVD()`, `AsySVD()`: the library's
defaults (`random_state=0`), no tuning. `PureSVD k=20/50/100`:
`SVDRecommender(k, shrinkage=0)`, fixed ranks (no tuning); "PureSVD's best" of
a dataset is the best of their three means. `<model> grid-best`:
`GridSearchCV(model(random_state=0), grid, scoring=make_topk_scorer("ndcg",
k=10, holdout=0.2, relevance_threshold={RELEVANCE:g}, random_state=0),
cv=KFold({SEARCH_FOLDS}, shuffle=True, random_state=0))` fitted on the training matrix
only (KFold splits users; the scorer folds the held-out users' other 80% in),
then its `best_estimator_` (refitted on the whole training matrix; `fit_s` is
its `refit_time_`) on the test part; grids: """ + "; ".join(
    f"{m}: " + " x ".join(f"{k} {v}" for k, v in g.items()) for m, g in SEARCH_GRIDS.items()
) + f""". `EASE` (Steck 2019): `B = I - P diag(1/diag(P))`, `P = (X^T X +
lambda I)^-1` on the ratings as stored, scores `X B`; computed in float64 in
its dual form (`X (X^T X + lambda I)^-1 = (X X^T + lambda I)^-1 X`, a
users x users solve), exact on the unseen items (the only ones ranked), checked
against the direct item x item formula on every ml-100k fold (largest
difference in the notes); lambda from {", ".join(f"{x:g}" for x in EASE_GRID)}.
scipy-`svds` PureSVD k=50 (float64 ARPACK) is the reference of PureSVD k=50;
most-popular ranks items by their number of training ratings. implicit's ALS
gets the ratings as confidences (alpha * r, alpha tuned); BPR gets binarized
interactions. implicit is run with BLAS limited to one thread, as it
recommends.

**Tuning.** EASE and implicit's hyper-parameters are chosen, per split, on a
validation split of the training matrix only: `train_test_split_interactions(train, 0.2,
random_state=0)` (per user, 20% of each user's training ratings), fitting on
the remaining 80% and maximising NDCG@10 with the same relevance rule; the
chosen setting is then refitted on the whole training matrix. The grid-best
rows are chosen by the cross-validation above, also on the training matrix
only. The test part is never used to choose anything. Every grid point's
score is recorded below.

**New users (strong generalisation).** MovieLens 100K `u1.base` only: its
users are cut into {NEW_USER_FOLDS} folds (`KFold({NEW_USER_FOLDS}, shuffle=True, random_state=0)`), so
every user is held out of `fit` once; the models are fitted on the other folds'
rows; each held-out user's ratings are split per user 80/20
(`train_test_split_interactions(X_new, 0.2, random_state=fold)`), the 80% folded in
by `recommend` (and excluded from the list) and NDCG@10 measured on the 20%
(relevant: rated >= {RELEVANCE:g}); the means are over the {NEW_USER_FOLDS} folds. Rows: the three
defaults and PureSVD k=20/50/100.

Fit time is the fit on the whole training matrix (one thread pool of
torch/BLAS on a 2-core machine shared with other work: timings are noisy;
the load average at the start is given below); recommend time is the top-20
for the evaluated users."""


def _data_home():
    from sksvd.datasets import get_data_home

    return get_data_home()


def _torch_device(device):
    from sksvd._backend import resolve_device

    return resolve_device(device)


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------- models
class Model:
    """A model of the comparison: a grid, a fit and a ranking through the one top-k."""

    name = ""
    label = ""

    def grid(self, quick):
        return [{}]

    def fit(self, X, params, device):
        raise NotImplementedError

    def recommend(self, state, X_rows, rows, k, device):
        raise NotImplementedError


def _product(g):
    """Every point of the grid ``g`` (name -> values), by scikit-learn's ParameterGrid."""
    from sklearn.model_selection import ParameterGrid

    return list(ParameterGrid(g))


class SksvdModel(Model):
    """An sksvd recommender with fixed parameters, ranked by its own ``recommend``."""

    def __init__(self, name, cls_name, fixed, label=None):
        self.name, self.cls_name, self.fixed = name, cls_name, fixed
        self.label = label or name

    def fit(self, X, params, device):
        import sksvd

        cls = getattr(sksvd, self.cls_name)
        return cls(**self.fixed, **params, random_state=0, device=device).fit(X)

    def recommend(self, state, X_rows, rows, k, device):
        return state.recommend(X_rows, k=k)[0]


class SearchModel(SksvdModel):
    """An sksvd recommender chosen by ``GridSearchCV`` with the top-k scorer."""

    def __init__(self, cls_name, grid_full, grid_quick):
        super().__init__(f"{cls_name} grid-best", cls_name, {})
        self.grid_full, self.grid_quick = grid_full, grid_quick

    def grid(self, quick):
        return _product(self.grid_quick if quick else self.grid_full)

    def search(self, X, device, quick):
        """The fitted search (``refit=True``: ``best_estimator_`` is fitted on all of ``X``)."""
        from sklearn.model_selection import GridSearchCV, KFold

        import sksvd
        from sksvd.model_selection import make_topk_scorer

        est = getattr(sksvd, self.cls_name)(random_state=0, device=device)
        scorer = make_topk_scorer("ndcg", k=10, holdout=0.2, relevance_threshold=RELEVANCE,
                                  random_state=0)
        g = self.grid_quick if quick else self.grid_full
        return GridSearchCV(est, g, scoring=scorer,
                            cv=KFold(SEARCH_FOLDS, shuffle=True, random_state=0)).fit(X)


class EASE(Model):
    """EASE (Steck 2019), closed form, float64, through the users x users dual.

    ``B = I - P diag(1/diag(P))`` with ``P = (X^T X + lam I)^-1``. With
    ``M = (X X^T + lam I)^-1`` (push-through identity ``X P = M X``),
    ``diag(P)_j = (1 - x_j^T M x_j) / lam`` and, for an item ``j`` not in
    the row ``x``, ``(x B)_j = (x X^T M x_j) / (1 - x_j^T M x_j)``: the
    scores of the unseen items are ``U V^T`` with ``U = x X^T M`` and
    ``V = X^T diag(1 / (1 - diag(X^T M X)))``, ranked by the one top-k.
    """

    name, label = "EASE", "EASE (Steck 2019)"

    def __init__(self, lambdas=EASE_GRID):
        self.lambdas = lambdas

    def grid(self, quick):
        return [{"lambda": lam} for lam in self.lambdas]

    @staticmethod
    def dual(X, lam):
        """``(X, M, MX, d)``: ``X`` as float64 CSR, ``M = (X X^T + lam I)^-1``,
        ``MX = M X`` (users x items) and ``d_j = x_j^T M x_j``."""
        X = sp.csr_matrix(X, dtype=np.float64)
        K = (X @ X.T).toarray()
        K[np.diag_indices_from(K)] += lam
        M = np.linalg.inv(K)
        M = (M + M.T) / 2
        MX = np.asarray(X.T @ M).T
        return X, M, MX, np.asarray(X.multiply(MX).sum(0)).ravel()

    def fit(self, X, params, device):
        X, M, _, diag = self.dual(X, float(params["lambda"]))
        V = X.T.toarray() / (1.0 - diag)[:, None]             # (n_items, n_users)
        return X, M, V

    def recommend(self, state, X_rows, rows, k, device):
        import torch

        X, M, V = state
        U = np.asarray((sp.csr_matrix(X_rows, dtype=np.float64) @ X.T).toarray()) @ M
        return _rank_factors(U, V, X_rows, k, device, dtype=torch.float64)

    @staticmethod
    def direct_difference(state, X, lam, X_rows):
        """Largest |dual - direct| over the unseen scores, relative to the largest score."""
        Xd = sp.csr_matrix(X, dtype=np.float64)
        G = (Xd.T @ Xd).toarray()
        G[np.diag_indices_from(G)] += lam
        P = np.linalg.inv(G)
        B = np.eye(P.shape[0]) - P / np.diag(P)[None, :]
        S = sp.csr_matrix(X_rows, dtype=np.float64) @ B
        _, M, V = state
        S_dual = np.asarray((sp.csr_matrix(X_rows, dtype=np.float64) @ Xd.T).toarray()) @ M @ V.T
        unseen = sp.csr_matrix(X_rows).toarray() == 0
        return float(np.abs(S - S_dual)[unseen].max() / np.abs(S[unseen]).max())


def _rank_factors(U, V, X_rows, k, device, dtype=None):
    import torch

    from sksvd._topk import topk_items

    return topk_items(U, V, k, seen=X_rows, device=device,
                      dtype=torch.float32 if dtype is None else dtype)[0]


class SvdsPureSVD(Model):
    """PureSVD from scipy's ARPACK ``svds`` in float64: the reference of the match check."""

    name, label = "scipy-svds PureSVD k=50", "scipy svds"

    def fit(self, X, params, device):
        from scipy.sparse.linalg import svds

        _, _, Vt = svds(X.astype(np.float64), k=params["n_components"], random_state=0)
        return np.ascontiguousarray(Vt.T)

    def grid(self, quick):
        return [{"n_components": 50}]

    def recommend(self, V, X_rows, rows, k, device):
        import torch

        U = X_rows.astype(np.float64) @ V
        return _rank_factors(U, V, X_rows, k, device, dtype=torch.float64)


class ImplicitModel(Model):
    """implicit's ALS or BPR; its factors are ranked by our top-k."""

    def __init__(self, kind, grid_full, grid_quick, fixed):
        self.kind, self.grid_full, self.grid_quick, self.fixed = kind, grid_full, grid_quick, fixed
        self.name = f"implicit {kind.upper()}"
        self.label = self.name

    def grid(self, quick):
        return _product(self.grid_quick if quick else self.grid_full)

    def fit(self, X, params, device):
        from threadpoolctl import threadpool_limits

        if self.kind == "als":
            from implicit.als import AlternatingLeastSquares as cls
        else:
            from implicit.bpr import BayesianPersonalizedRanking as cls
            X = X.copy()
            X.data[:] = 1.0
        use_gpu = str(device).startswith("cuda") and _implicit_has_cuda()
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls(**self.fixed, **params, random_state=0, use_gpu=use_gpu)
            model.fit(sp.csr_matrix(X, dtype=np.float32), show_progress=False)
        if use_gpu:
            _sync(device)
            model = model.to_cpu()
        return np.asarray(model.user_factors), np.asarray(model.item_factors)

    def recommend(self, state, X_rows, rows, k, device):
        U, V = state
        return _rank_factors(U[rows], V, X_rows, k, device)


class MostPopular(Model):
    """Items by number of training ratings, the same list for everyone (seen excluded)."""

    name, label = "most-popular", "most-popular"

    def fit(self, X, params, device):
        return np.bincount(X.indices, minlength=X.shape[1]).astype(np.float32)

    def recommend(self, pop, X_rows, rows, k, device):
        U = np.ones((X_rows.shape[0], 1), dtype=np.float32)
        return _rank_factors(U, pop[:, None], X_rows, k, device)


def _implicit_has_cuda():
    try:
        import implicit.gpu

        return bool(implicit.gpu.HAS_CUDA)
    except ImportError:
        return False


def _importable(cls_name):
    try:
        import sksvd

        getattr(sksvd, cls_name)
        return None
    except Exception as exc:  # another helper's model may not be there yet
        return repr(exc)


def default_models():
    """The library's defaults and PureSVD at the fixed ranks (no tuning)."""
    out = [SksvdModel(name, name[:-2], {}) for name in DEFAULTS]
    out += [SksvdModel(f"PureSVD k={k}", "SVDRecommender", {"n_components": k, "shrinkage": 0.0})
            for k in PURESVD_RANKS]
    return out


def models(quick):
    """The models compared, with their grids (quick: smaller implicit grids, no grid search)."""
    out = default_models() + [SvdsPureSVD(), EASE()]
    if not quick:
        out += [SearchModel(cls_name, g, {}) for cls_name, g in SEARCH_GRIDS.items()]
    try:
        import implicit  # noqa: F401

        out += [
            ImplicitModel("als", {"factors": [16, 32, 64, 128], "regularization": [0.1, 1.0],
                                  "alpha": [1.0, 5.0]},
                          {"factors": [16, 32], "regularization": [0.1], "alpha": [1.0]},
                          {"iterations": 15}),
            ImplicitModel("bpr", {"factors": [32, 64, 128], "learning_rate": [0.005, 0.01],
                                  "regularization": [0.01]},
                          {"factors": [64], "learning_rate": [0.01], "regularization": [0.01]},
                          {"iterations": 100}),
        ]
    except ImportError:
        pass
    out.append(MostPopular())
    return out


# ---------------------------------------------------------------------------- protocol
def relevant_of(X_test, threshold=RELEVANCE):
    """The relevant matrix: test entries rated >= threshold (others dropped)."""
    X_test = sp.csr_matrix(X_test)
    R = X_test.multiply(X_test >= threshold).tocsr()
    R.eliminate_zeros()
    return R


def score_lists(relevant, ids, ks=K_EVAL):
    """NDCG, recall, precision, MAP and coverage at each k, by :func:`sksvd.metrics.topk_metrics`."""
    from sksvd.metrics import topk_metrics

    out = {}
    for k in ks:
        res = topk_metrics(relevant, ids, k, metrics=RANKING + ("coverage",))
        out.update({f"{m}@{k}": res[m] for m in RANKING + ("coverage",)})
        out["n_users"], out["n_skipped"] = res["n_users"], res["n_skipped"]
    return out


def evaluate_split(model, state, X_train, X_test, device, ks=K_EVAL):
    """Rank for users with a relevant test item (seen excluded) and score; time the ranking."""
    R = relevant_of(X_test)
    rows = np.flatnonzero(np.diff(R.indptr))
    X_rows = X_train[rows]
    t0 = time.perf_counter()
    ids = model.recommend(state, X_rows, rows, max(ks), device)
    _sync(device)
    seconds = time.perf_counter() - t0
    res = score_lists(R[rows], ids, ks)
    res["n_skipped"] = int(X_train.shape[0] - rows.size)
    return res, seconds


def tune(model, X_train, device, quick, log):
    """Choose the grid point with the best validation NDCG@10 on a split of ``X_train``."""
    from sksvd.model_selection import train_test_split_interactions

    grid = model.grid(quick)
    if len(grid) == 1:
        return grid[0], []
    X_fit, X_val = train_test_split_interactions(X_train, 0.2, random_state=0)
    records = []
    for params in grid:
        state = model.fit(X_fit, params, device)
        res, _ = evaluate_split(model, state, X_fit, X_val, device, ks=(10,))
        records.append({"params": params, "score": res["ndcg@10"]})
        log(f"    {model.name} {params}: val NDCG@10 {res['ndcg@10']:.4f}")
    best = max(records, key=lambda r: r["score"])
    return best["params"], records


def fit_and_evaluate(model, X_train, X_test, device, quick, log):
    """Tune (on ``X_train`` only), fit and evaluate one model on one split."""
    if isinstance(model, SearchModel):
        t0 = time.perf_counter()
        search = model.search(X_train, device, quick)
        res_cv = search.cv_results_
        records = [{"params": p, "score": float(s)}
                   for p, s in zip(res_cv["params"], res_cv["mean_test_score"], strict=True)]
        for r in records:
            log(f"    {model.name} {r['params']}: {SEARCH_FOLDS}-fold NDCG@10 {r['score']:.4f}")
        params, state, fit_s = search.best_params_, search.best_estimator_, search.refit_time_
        log(f"    {model.name}: search {time.perf_counter() - t0:.0f}s")
    else:
        params, records = tune(model, X_train, device, quick, log)
        t0 = time.perf_counter()
        state = model.fit(X_train, params, device)
        _sync(device)
        fit_s = time.perf_counter() - t0
    res, rec_s = evaluate_split(model, state, X_train, X_test, device)
    return params, records, state, fit_s, res, rec_s


def splits(dataset, quick, validation=False):
    """(split name, X_train, X_test) for a dataset.

    With ``validation`` the test parts are left unread: each training matrix is
    split again, per user 80/20 (``random_state=VALIDATION_SEED``), and its two
    parts stand for the training and the test parts.
    """
    if validation:
        from sksvd.model_selection import train_test_split_interactions

        for split, X_train, _ in splits(dataset, quick):
            X_fit, X_val = train_test_split_interactions(X_train, 0.2,
                                                         random_state=VALIDATION_SEED)
            yield f"{split}, validation", X_fit, X_val
        return
    from sksvd.datasets import load_movielens

    home = _data_home()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the local u.item copy has one malformed line
        if dataset == "ml-100k":
            for fold in FOLDS[:1] if quick else FOLDS:
                ds = load_movielens("100k", fold=fold, data_home=home,
                                    download_if_missing=False)
                yield fold, sp.csr_matrix(ds.X_train), sp.csr_matrix(ds.X_test)
        else:
            from sksvd.model_selection import train_test_split_interactions

            ds = load_movielens("latest-small", data_home=home, download_if_missing=False)
            for seed in SEEDS:
                X_train, X_test = train_test_split_interactions(ds.X, 0.2, random_state=seed)
                yield f"80/20 seed {seed}", X_train, X_test


def new_user_splits():
    """ml-100k ``u1.base``: (fold, X_fit of the kept users, X_in, X_hidden of the held-out users)."""
    from sklearn.model_selection import KFold

    from sksvd.model_selection import train_test_split_interactions

    _, X, _ = next(splits("ml-100k", quick=True))
    folds = KFold(NEW_USER_FOLDS, shuffle=True, random_state=0).split(np.arange(X.shape[0]))
    for fold, (kept, out) in enumerate(folds):
        X_in, X_hidden = train_test_split_interactions(X[out], 0.2, random_state=fold)
        yield fold, X[kept], X_in, X_hidden


def _record(per_split, grid_rows, dataset, split, model, params, records, fit_s, res, rec_s,
            how="validation split"):
    for r in records:
        grid_rows.append({"dataset": dataset, "split": split, "model": model.name,
                          "tuned by": how, "params": _fmt_params(r["params"]),
                          "ndcg@10": r["score"], "chosen": r["params"] == params})
    per_split.append({"dataset": dataset, "split": split, "model": model.name,
                      "params": _fmt_params(params), **res, "fit_s": fit_s,
                      "recommend_s": rec_s})


def quality(quick=False, device="cpu", log=print, validation=False):
    """Run the top-N comparison; return (summary, per-split rows, grid rows, checks, notes).

    ``validation``: on validation splits of the training parts only (see :func:`splits`),
    without the new-user part.
    """
    datasets = ("ml-100k",) if quick else ("ml-100k", "ml-latest-small")
    per_split, grid_rows, notes = [], [], []
    ease_diffs = []
    for dataset in datasets:
        for split, X_train, X_test in splits(dataset, quick, validation):
            log(f"  {dataset} {split}: {X_train.shape}, {X_train.nnz} train ratings")
            for model in models(quick):
                if isinstance(model, SksvdModel):
                    err = _importable(model.cls_name)
                    if err:
                        notes.append(f"{model.name} skipped: not importable ({err})")
                        continue
                try:
                    params, records, state, fit_s, res, rec_s = fit_and_evaluate(
                        model, X_train, X_test, device, quick, log)
                    if isinstance(model, EASE) and dataset == "ml-100k":
                        rows = np.flatnonzero(np.diff(relevant_of(X_test).indptr))
                        ease_diffs.append(EASE.direct_difference(
                            state, X_train, params["lambda"], X_train[rows]))
                except Exception as exc:  # record and go on: one model must not sink the suite
                    notes.append(f"{model.name} on {dataset} {split} failed: {exc!r}")
                    log(f"    {model.name} FAILED: {exc!r}")
                    continue
                how = (f"GridSearchCV, {SEARCH_FOLDS}-fold over users"
                       if isinstance(model, SearchModel) else "validation split")
                _record(per_split, grid_rows, dataset, split, model, params, records, fit_s,
                        res, rec_s, how)
                log(f"    {model.name} {params}: NDCG@10 {res['ndcg@10']:.4f} "
                    f"fit {fit_s:.2f}s rec {rec_s:.2f}s")
    if ease_diffs:
        notes.append("EASE dual form against the direct item x item formula (float64, at the "
                     "chosen lambda, the evaluated users' unseen items): largest difference "
                     f"{max(ease_diffs):.1e} of the largest score.")
    for fold, X_fit, X_in, X_hidden in () if validation else new_user_splits():
        split = f"u1.base, user fold {fold} of {NEW_USER_FOLDS} held out of fit"
        log(f"  {NEW_USERS}: fit on {X_fit.shape[0]} users, {X_in.shape[0]} new users folded in")
        for model in default_models():
            if _importable(model.cls_name):
                continue
            t0 = time.perf_counter()
            state = model.fit(X_fit, {}, device)
            _sync(device)
            fit_s = time.perf_counter() - t0
            res, rec_s = evaluate_split(model, state, X_in, X_hidden, device)
            _record(per_split, grid_rows, NEW_USERS, split, model, {}, [], fit_s, res, rec_s)
            log(f"    {model.name}: NDCG@10 {res['ndcg@10']:.4f} fit {fit_s:.2f}s")
    summary = summarize(per_split)
    checks = make_checks(per_split, summary)
    return summary, per_split, grid_rows, checks, notes


def _fmt_params(params):
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items()) or "-"


def summarize(per_split):
    """Mean over the splits of each (dataset, model); chosen params listed per split."""
    out = []
    keys = list(dict.fromkeys((r["dataset"], r["model"]) for r in per_split))
    for dataset, model in keys:
        rows = [r for r in per_split if r["dataset"] == dataset and r["model"] == model]
        row = {"dataset": dataset, "model": model, "splits": len(rows),
               "chosen": "; ".join(r["params"] for r in rows)}
        for key in [f"{m}@{k}" for k in K_EVAL for m in RANKING + ("coverage",)]:
            row[key] = float(np.mean([r[key] for r in rows]))
        row["fit_s"] = float(np.mean([r["fit_s"] for r in rows]))
        row["recommend_s"] = float(np.mean([r["recommend_s"] for r in rows]))
        row["n_users"] = int(sum(r["n_users"] for r in rows))
        row["n_skipped"] = int(sum(r["n_skipped"] for r in rows))
        out.append(row)
    return out


def _get(rows, dataset, model, key="ndcg@10"):
    for r in rows:
        if r["dataset"] == dataset and r["model"] == model:
            return r[key]
    return None


def _best_of(summary, dataset, names):
    """(name, mean NDCG@10) of the best of ``names`` present for ``dataset``."""
    found = [(n, _get(summary, dataset, n)) for n in names]
    found = [(n, v) for n, v in found if v is not None]
    return max(found, key=lambda nv: nv[1]) if found else (None, None)


def _check(name, ours, ref, difference, target, passed, detail=""):
    return {"check": name, "ours": ours, "reference": ref, "difference": difference,
            "target": target, "passed": bool(passed), "detail": detail}


def make_checks(per_split, summary):
    """The quality checks, with the measured numbers."""
    checks = []
    ours = _get(summary, "ml-100k", "PureSVD k=50")
    ref = _get(summary, "ml-100k", SvdsPureSVD.name)
    if ours is not None and ref is not None:
        diffs = [abs(a["ndcg@10"] - b["ndcg@10"])
                 for a in per_split for b in per_split
                 if a["dataset"] == b["dataset"] == "ml-100k" and a["split"] == b["split"]
                 and a["model"] == "PureSVD k=50" and b["model"] == SvdsPureSVD.name]
        checks.append(_check("ml-100k: PureSVD k=50 matches scipy-svds PureSVD k=50 "
                             "(mean NDCG@10)", ours, ref, abs(ours - ref), f"<= {MATCH_TOL:g}",
                             abs(ours - ref) <= MATCH_TOL,
                             f"largest per-fold difference {max(diffs):.2e}"))
    puresvd = [f"PureSVD k={k}" for k in PURESVD_RANKS]
    datasets = list(dict.fromkeys(r["dataset"] for r in summary))
    for dataset in datasets:
        best_name, best = _best_of(summary, dataset, puresvd)
        if best is None:
            continue
        for name in DEFAULTS:
            v = _get(summary, dataset, name)
            if v is not None:
                checks.append(_check(
                    f"{dataset}: {name} mean NDCG@10 >= PureSVD's best of k in "
                    f"{{{', '.join(map(str, PURESVD_RANKS))}}}", v, best, v - best, ">= 0",
                    v >= best, f"PureSVD's best: {best_name}"))
    for dataset in datasets:
        ease = _get(summary, dataset, "EASE")
        name, best = _best_of(summary, dataset, [f"{c} grid-best" for c in SEARCH_GRIDS])
        if ease is not None and best is not None:
            checks.append(_check(
                f"{dataset}: best sksvd grid-best mean NDCG@10 >= {EASE_MARGIN:g} x EASE",
                best, ease, best / ease, f">= {EASE_MARGIN:g} (ratio)",
                best >= EASE_MARGIN * ease, f"best: {name}"))
    u1 = [r for r in per_split if r["dataset"] == "ml-100k" and r["split"] == "u1"]
    for name in DEFAULTS:
        row = next((r for r in u1 if r["model"] == name), None)
        if row is not None:
            folds = [r["fit_s"] for r in per_split
                     if r["dataset"] == "ml-100k" and r["model"] == name]
            checks.append(_check(f"{name} fit on ml-100k u1.base <= {FIT_LIMIT_S:g} s",
                                 row["fit_s"], FIT_LIMIT_S, row["fit_s"] / FIT_LIMIT_S,
                                 "<= 1 (ratio)", row["fit_s"] <= FIT_LIMIT_S,
                                 f"over the {len(folds)} folds: mean {np.mean(folds):.2f} s, "
                                 f"largest {max(folds):.2f} s"))
    als = _get(summary, "ml-100k", "implicit ALS")
    ours = _get(summary, "ml-100k", "SVDRecommender()")
    if ours is not None and als is not None:
        checks.append(_check("ml-100k: SVDRecommender() NDCG@10 beats implicit's best ALS",
                             ours, als, ours - als, "> 0", ours > als))
    return checks


def quality_ratios(summary):
    """ours / peer ratios (same run) recorded for the regression guard."""
    ours = _get(summary, "ml-100k", "SVDRecommender()")
    out = {}
    for peer in ("EASE", "implicit ALS", "implicit BPR", "most-popular"):
        other = _get(summary, "ml-100k", peer)
        if ours and other:
            out[f"ml-100k NDCG@10 SVDRecommender() / {peer}"] = {
                "value": ours / other, "better": "higher", "ours": ours, "peer": other}
    a, b = _get(summary, "ml-100k", "PureSVD k=50"), _get(summary, "ml-100k", SvdsPureSVD.name)
    if a and b:
        out["ml-100k NDCG@10 PureSVD k=50 / scipy-svds k=50"] = {
            "value": a / b, "better": "higher", "ours": a, "peer": b}
    return out


# ---------------------------------------------------------------------------- speed
SPEED_SHAPE = (200_000, 50_000, 20_000_000)


def _mb(nbytes):
    return nbytes / 2**20


def _ours_child(X, k, device, top_k=10):
    """Fit SVDRecommender, then top-``top_k`` for every row of ``X``: times and peak memory.

    Peak memory of each phase is beyond the process's size when the phase
    starts (the input; for the top-k also the fitted model). A tiny fit first
    takes torch's one-time start-up out of the timing. The GEMM rate is
    measured just before the top-k (same process, same moment), and the load
    average at each step, since the machine is shared. ``top_k=None`` stops
    after the fit.
    """
    import torch

    from sksvd import SVDRecommender

    cuda = str(device).startswith("cuda")
    SVDRecommender(4, shrinkage=0.0, random_state=0, device=device).fit(X[:1000])
    _sync(device)
    base = h.current_rss()
    h.reset_peak_rss()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    rec = SVDRecommender(k, shrinkage=0.0, random_state=0, device=device).fit(X)
    _sync(device)
    out = {"fit_s": time.perf_counter() - t0, "fit_load": load,
           "fit_peak_extra_mb": _mb(max(h.peak_rss() - base, 0)),
           "V": rec.item_factors_}
    if cuda:
        out["fit_gpu_peak_mb"] = _mb(torch.cuda.max_memory_allocated())
        torch.cuda.reset_peak_memory_stats()
    if top_k is None:
        return out
    out["gemm_gflops"] = h.matmul_gflops(device=str(_torch_device(device)))
    out["recommend_load"] = os.getloadavg()[0]
    base = h.current_rss()
    h.reset_peak_rss()
    runs = []
    for _ in range(2):  # best of 2, as the GEMM reference is the best of its runs
        t0 = time.perf_counter()
        ids, _ = rec.recommend(X, k=top_k)
        _sync(device)
        runs.append(time.perf_counter() - t0)
    out["recommend_s"] = min(runs)
    out["recommend_runs"] = runs
    out["recommend_peak_extra_mb"] = _mb(max(h.peak_rss() - base, 0))
    out["padded"] = int((ids < 0).sum())
    if cuda:
        out["recommend_gpu_peak_mb"] = _mb(torch.cuda.max_memory_allocated())
    out["breakdown"] = recommend_breakdown(rec, X, top_k, device)
    return out


def _fit_svds_child(X, k):
    from scipy.sparse.linalg import svds

    base = h.current_rss()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    _, _, Vt = svds(X, k=k, random_state=0)
    return {"fit_s": time.perf_counter() - t0, "fit_load": load,
            "fit_peak_extra_mb": _mb(max(h.peak_rss() - base, 0)),
            "V": np.ascontiguousarray(Vt.T)}


def _fit_als_child(X, factors, iterations, device):
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    use_gpu = str(device).startswith("cuda") and _implicit_has_cuda()
    base = h.current_rss()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, iterations=iterations,
                                        random_state=0, use_gpu=use_gpu)
        model.fit(X, show_progress=False)
    return {"fit_s": time.perf_counter() - t0, "fit_load": load,
            "fit_peak_extra_mb": _mb(max(h.peak_rss() - base, 0)), "use_gpu": use_gpu}


def energy(X, V):
    """``||X V||_F^2`` in float64."""
    XV = X @ np.asarray(V, dtype=np.float64)
    return float(np.einsum("ij,ij->", XV, XV))


def gemm_at_shape(m, k, n, device, repeat=5):
    """GFLOP/s of a (m x k) @ (k x n) float32 product alone (the top-k's score block).

    On the CPU the best of numpy's BLAS (what ``recommend`` uses there) and
    torch's, as for the 4096^3 reference.
    """
    import torch

    dev = _torch_device(device)
    a = torch.randn(m, k, device=dev)
    b = torch.randn(n, k, device=dev)
    _, sec = h.timed(lambda: a @ b.T, repeat=repeat, warmup=1,
                     sync=torch.cuda.synchronize if dev.type == "cuda" else None)
    if dev.type == "cpu":
        an, bn, out = a.numpy(), b.numpy(), np.empty((m, n), dtype=np.float32)
        _, sec_np = h.timed(lambda: np.matmul(an, bn.T, out=out), repeat=repeat, warmup=1)
        sec = min(sec, sec_np)
    return 2.0 * m * k * n / sec / 1e9


# Rows per timed batch of the breakdown (the CPU top-k's own batch size).
BREAKDOWN_ROWS = 512


def recommend_breakdown(rec, X, k, device, every=10, rows=BREAKDOWN_ROWS):
    """Time the parts of ``recommend`` through the public API on every ``every``-th batch.

    On batches of ``rows`` rows of ``X``, scaled to all batches: the fold-in
    (``rec.transform``), the scoring and top-k (``rec.recommend`` with
    ``exclude_seen=False``, less the fold-in) and the exclusion of the seen
    items (``rec.recommend`` with less without). Returns ``(phases, rows,
    n_batches)``; the phases add up to ``recommend``'s time.
    """
    starts = list(range(0, X.shape[0], rows))
    picked = starts[::every]
    fold = plain = full = 0.0
    for s in picked:
        Xb = X[s:s + rows]
        t0 = time.perf_counter()
        rec.transform(Xb)
        _sync(device)
        t1 = time.perf_counter()
        rec.recommend(Xb, k=k, exclude_seen=False)
        _sync(device)
        t2 = time.perf_counter()
        rec.recommend(Xb, k=k)
        _sync(device)
        t3 = time.perf_counter()
        fold, plain, full = fold + t1 - t0, plain + t2 - t1, full + t3 - t2
    scale = len(starts) / len(picked)
    phases = {"fold-in (transform)": fold,
              "scores + top-k (recommend, nothing excluded, less the fold-in)": plain - fold,
              "seen items excluded (recommend, less recommend without)": full - plain}
    return {name: sec * scale for name, sec in phases.items()}, rows, len(starts)


def speed(device="cpu", log=print, shape=SPEED_SHAPE, k=100, als_factors=128,
          als_iterations=15, timeout=3600):
    """The speed part; returns (rows, extra dict, checks, ratios)."""
    n_users, n_items, nnz = shape
    t0 = time.perf_counter()
    X = h.cached_powerlaw_csr(n_users, n_items, nnz, seed=0)
    log(f"  matrix {X.shape}, nnz {X.nnz} ready in {time.perf_counter() - t0:.1f}s "
        "(cached under $SKSVD_BENCH_CACHE or /tmp)")
    gemm = h.matmul_gflops(device=str(_torch_device(device)))
    log(f"  float32 GEMM rate (4096^3): {gemm:.1f} GFLOP/s")
    run = dict(start_method="forkserver", timeout=timeout)
    rows, notes = [], []

    ours = h.measure(_ours_child, X, k, device, **run)["result"]
    log(f"  sksvd SVDRecommender k={k}: fit {ours['fit_s']:.2f}s, "
        f"peak extra {ours['fit_peak_extra_mb']:.0f} MB")
    e_ours = energy(X, ours["V"])
    svds_res = als_res = None
    try:
        svds_res = h.measure(_fit_svds_child, X, k, **run)["result"]
        log(f"  scipy svds k={k}: {svds_res['fit_s']:.2f}s")
    except (TimeoutError, RuntimeError) as exc:
        notes.append(f"scipy svds: {exc}")
    e_svds = energy(X, svds_res["V"]) if svds_res else None
    try:
        als_res = h.measure(_fit_als_child, X, als_factors, als_iterations, device,
                            **run)["result"]
        log(f"  implicit ALS factors={als_factors} x{als_iterations}: {als_res['fit_s']:.2f}s")
    except (TimeoutError, RuntimeError) as exc:
        notes.append(f"implicit ALS: {exc}")
    # Ours again after the peers, so that a change of load during the run
    # does not favour whichever ran first; the mean of the two is reported.
    again = h.measure(_ours_child, X, k, device, None, **run)["result"]
    log(f"  sksvd SVDRecommender k={k} again: fit {again['fit_s']:.2f}s")
    ours_fits = [ours["fit_s"], again["fit_s"]]

    rows.append({"part": "fit", "model": f"sksvd SVDRecommender (k={k})", "device": device,
                 "seconds": float(np.mean(ours_fits)),
                 "runs": " / ".join(f"{t:.2f}" for t in ours_fits),
                 "load": " / ".join(f"{r['fit_load']:.1f}" for r in (ours, again)),
                 "peak_extra_mb": max(ours["fit_peak_extra_mb"], again["fit_peak_extra_mb"]),
                 "energy_vs_svds": e_ours / e_svds if e_svds else None})
    if svds_res:
        rows.append({"part": "fit", "model": f"scipy svds (k={k}, float32 ARPACK)",
                     "device": "cpu", "seconds": svds_res["fit_s"],
                     "load": f"{svds_res['fit_load']:.1f}",
                     "peak_extra_mb": svds_res["fit_peak_extra_mb"], "energy_vs_svds": 1.0})
    if als_res:
        rows.append({"part": "fit",
                     "model": f"implicit ALS (factors={als_factors}, {als_iterations} it.)",
                     "device": "cuda" if als_res["use_gpu"] else "cpu",
                     "seconds": als_res["fit_s"], "load": f"{als_res['fit_load']:.1f}",
                     "peak_extra_mb": als_res["fit_peak_extra_mb"],
                     "energy_vs_svds": None})

    # (b) top-10 for every user, timed in the same child after its fit, against the
    # GEMM rate measured in that child just before.
    rec_s = ours["recommend_s"]
    gemm_now = ours["gemm_gflops"]
    flops = 2.0 * n_users * n_items * k
    rate = flops / rec_s / 1e9
    log(f"  recommend top-10 for {n_users} users: {rec_s:.2f}s = {rate:.1f} GFLOP/s "
        f"({100 * rate / gemm_now:.0f}% of GEMM {gemm_now:.1f} measured just before), "
        f"peak extra {ours['recommend_peak_extra_mb']:.0f} MB")
    rows.append({"part": "top-10 all users", "model": "sksvd recommend (batched)",
                 "device": device, "seconds": rec_s,
                 "runs": " / ".join(f"{t:.2f}" for t in ours["recommend_runs"]),
                 "load": f"{ours['recommend_load']:.1f}",
                 "peak_extra_mb": ours["recommend_peak_extra_mb"], "gflops": rate,
                 "gemm_4096_gflops": gemm_now, "share_of_gemm": rate / gemm_now})
    if str(device).startswith("cuda"):
        rows.append({"part": "fit + top-10 all users", "model": "sksvd (GPU)", "device": device,
                     "seconds": ours["fit_s"] + rec_s,
                     "gpu_peak_mb": max(ours.get("fit_gpu_peak_mb", 0),
                                        ours.get("recommend_gpu_peak_mb", 0))})
    gemm_b = h.matmul_gflops(device=str(_torch_device(device)))
    phases, bs, n_batches = ours["breakdown"]
    total = sum(phases.values())
    breakdown = [{"phase": p, "seconds": sec, "share": sec / total}
                 for p, sec in phases.items()]
    shape_rate = gemm_at_shape(bs, k, n_items, device)
    breakdown.append({"phase": f"ceiling: ({bs} x {k}) @ ({k} x {n_items}) GEMM alone, GFLOP/s",
                      "gflops": shape_rate, "gemm_4096_gflops": gemm_b,
                      "share_of_gemm": shape_rate / gemm_b})
    log("  breakdown: " + ", ".join(f"{p} {sec:.2f}s" for p, sec in phases.items())
        + f"; GEMM at the batch shape {shape_rate:.1f} GFLOP/s = "
        f"{100 * shape_rate / gemm_b:.0f}% of 4096^3 ({gemm_b:.1f})")

    t_ours = float(np.mean(ours_fits))
    checks, ratios = [], {}
    if svds_res:
        t = svds_res["fit_s"]
        checks.append({"check": "fit >= 3x faster than scipy svds (k=100)",
                       "ours": t_ours, "reference": t, "difference": t / t_ours,
                       "target": ">= 3 (speed-up)", "passed": t / t_ours >= 3, "detail": ""})
        checks.append({"check": "subspace captures >= 99.5% of svds's energy ||X V_k||_F^2",
                       "ours": e_ours, "reference": e_svds, "difference": e_ours / e_svds,
                       "target": ">= 0.995", "passed": e_ours / e_svds >= 0.995, "detail": ""})
        ratios["20M fit time sksvd / scipy svds"] = {"value": t_ours / t, "better": "lower",
                                                     "ours": t_ours, "peer": t}
    if als_res:
        t = als_res["fit_s"]
        checks.append({"check": "fit >= 5x faster than implicit ALS (128 factors, 15 it.)",
                       "ours": t_ours, "reference": t, "difference": t / t_ours,
                       "target": ">= 5 (speed-up)", "passed": t / t_ours >= 5, "detail": ""})
        ratios["20M fit time sksvd / implicit ALS"] = {"value": t_ours / t, "better": "lower",
                                                       "ours": t_ours, "peer": t}
    checks.append({"check": "top-10 for all users at >= 70% of the float32 GEMM rate",
                   "ours": rate, "reference": gemm_now, "difference": rate / gemm_now,
                   "target": ">= 0.70", "passed": rate / gemm_now >= 0.70,
                   "detail": f"{n_batches} batches of {bs} users"})
    checks.append({"check": "top-10 peak memory beyond the input < 2 GB",
                   "ours": ours["recommend_peak_extra_mb"], "reference": 2048.0,
                   "difference": ours["recommend_peak_extra_mb"] / 2048.0, "target": "< 1",
                   "passed": ours["recommend_peak_extra_mb"] < 2048.0, "detail": "MB"})
    ratios["20M top-10 rate / GEMM rate"] = {"value": rate / gemm_now, "better": "higher",
                                             "ours": rate, "peer": gemm_now}
    extra = {"gemm_gflops": gemm, "breakdown": breakdown, "notes": notes}
    return rows, extra, checks, ratios


# ---------------------------------------------------------------------------- main
def main(quick=False, device="cpu", speed_part=None, quality_part=True, log=print,
         validation=False):
    """Run the quality part (and the speed part unless ``quick``); write the results files."""
    if speed_part is None:
        speed_part = not quick
    summary = quality_main(quick, device, log, validation) if quality_part else None
    if speed_part:
        speed_main(device, log)
    return summary


def chosen_params(per_split):
    """The parameters chosen on the training data, per split (tuned rows only)."""
    tuned = ("EASE", "implicit ALS", "implicit BPR") + tuple(f"{c} grid-best"
                                                           for c in SEARCH_GRIDS)
    return [{"dataset": r["dataset"], "split": r["split"], "model": r["model"],
             "chosen": r["params"], "ndcg@10 (test)": r["ndcg@10"]}
            for r in per_split if r["model"] in tuned]


def quality_main(quick=False, device="cpu", log=print, validation=False):
    """The quality part; writes ``results/topn.{json,md}`` (``topn_validation`` with
    ``validation``: on validation splits of the training parts, the test parts unread)."""
    name = f"{NAME}_validation" if validation else NAME
    log(f"[{name}] quality ({'quick: fold u1, small grids, no grid search' if quick else 'full'}), "
        f"device {device}")
    load = os.getloadavg()
    t0 = time.perf_counter()
    summary, per_split, grid_rows, checks, notes = quality(quick, device, log, validation)
    load_end = os.getloadavg()
    ratios = quality_ratios(summary)
    cols = (["dataset", "model", "ndcg@10", "recall@10", "precision@10", "map@10", "ndcg@20",
             "recall@20", "precision@20", "map@20", "coverage@10", "coverage@20", "fit_s",
             "recommend_s", "n_users", "n_skipped", "chosen"])
    tables = {"Checks (quality)": checks,
              "Chosen parameters (on the training data only)": chosen_params(per_split),
              "Per split": per_split,
              "Tuning grids (NDCG@10 on the training data: a validation split, or the "
              "GridSearchCV mean)": grid_rows}
    notes = [f"Load average (1, 5, 15 min) at the start {load[0]:.2f}, {load[1]:.2f}, "
             f"{load[2]:.2f}; at the end {load_end[0]:.2f}, {load_end[1]:.2f}, "
             f"{load_end[2]:.2f}, on {os.cpu_count()} cores; the whole run took "
             f"{time.perf_counter() - t0:.0f} s."] + notes
    text_notes = (VALIDATION_NOTE if validation else "") + PROTOCOL + "\n\n" + "\n".join(
        f"- {n}" for n in notes)
    h.write_results(name, summary, device=device, notes=text_notes, columns=cols,
                    tables=tables, extra={"checks": checks, "ratios": ratios,
                                          "protocol": PROTOCOL, "quick": quick,
                                          "notes_list": notes,
                                          "load_average": [list(load), list(load_end)]})
    return summary


VALIDATION_NOTE = f"""\
**Validation run: the test parts are not read.** Each training part below (the
`uX.base` folds, the 80% parts of latest-small) is split again per user 80/20
(`train_test_split_interactions(X_train, 0.2, random_state={VALIDATION_SEED})`):
every model is tuned and fitted on the 80% and evaluated on the 20%, by the
protocol below with those two parts in place of the training and test parts.
Hyper-parameters and grids are chosen from these figures, never from the test parts.

"""

SPEED_PROTOCOL = (
    "**Speed protocol.** `harness.powerlaw_csr(200000, 50000, 20_000_000, seed=0)` "
    "(ratings 1..5, power-law users and items). Fits at k=100 each run once in a "
    "fresh child process (forkserver) in the same run; peak memory is the child's "
    "peak resident size beyond its size once the inputs were loaded. Energy is "
    "`||X V_k||_F^2` in float64 relative to svds's. Top-10 for every user is "
    "`SVDRecommender.recommend(X, k=10)` (fold-in `X V_k`, scores, seen items "
    "masked, exact top-k; on the CPU batches of 512 users scored 4,096 items at a "
    "time, each tile reduced while in the cache), timed twice, the faster kept (the "
    "GEMM reference is the best of its runs too); its rate "
    "counts 2 * users * items * k flops and is compared with this machine's float32 "
    "4096^3 GEMM rate (best of numpy's and torch's BLAS) measured in the same run. "
    "The breakdown times the public API on every 10th batch of 512 rows, scaled up: "
    "transform (the fold-in), recommend without and with the seen items excluded. The "
    "machine is shared with other work (2 cores): timings are noisy.")


def speed_main(device="cpu", log=print):
    """The speed part; writes ``results/topn_speed.{json,md}``."""
    log(f"[{NAME}] speed on a {SPEED_SHAPE} power-law CSR, device {device}")
    load = os.getloadavg()
    rows, extra, checks, ratios = speed(device, log)
    load_end = os.getloadavg()
    notes = (SPEED_PROTOCOL + f" Load average (1 min) at start {load[0]:.1f}, at the end "
             f"{load_end[0]:.1f}, on {os.cpu_count()} cores."
             + ("\n\n" + "\n".join(f"- {n}" for n in extra["notes"]) if extra["notes"] else ""))
    h.write_results(f"{NAME}_speed", rows, device=device, notes=notes,
                    tables={"Checks (speed)": checks,
                            "Top-10 breakdown (where the time goes)": extra["breakdown"]},
                    extra={"checks": checks, "ratios": ratios,
                           "gemm_gflops": extra["gemm_gflops"],
                           "load_average": [load[0], load_end[0]]})
    return rows


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fold u1 only, small grids, no speed")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--speed", dest="speed", action="store_true", default=None,
                   help="run the 20M speed part (default: on unless --quick)")
    g.add_argument("--no-speed", dest="speed", action="store_false")
    p.add_argument("--only-speed", action="store_true", help="skip the quality part")
    p.add_argument("--validation", action="store_true",
                   help="quality on validation splits of the training parts only (the test "
                        "parts unread; no speed part), to results/topn_validation")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = _parse()
    main(quick=args.quick, device=args.device,
         speed_part=False if args.validation else True if args.only_speed else args.speed,
         quality_part=not args.only_speed, validation=args.validation)
