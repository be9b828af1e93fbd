"""SVDRecommender's options and other model families beside EASE, on validation splits only.

Run ``python -m benchmarks.bench_topn_ablation [--quick] [--device cpu|cuda]``; writes
``results/topn_ablation.{json,md}`` (``--quick``: ml-100k ``u1``, three variants and the
choice over a one-point grid, to ``topn_ablation_quick``).

Every variant is one fixed point (no search) fitted on the validation splits of
:mod:`benchmarks.bench_topn` (``--validation``: each training part split again per
user 80/20; the test parts are never read) and scored by the same protocol, as
NDCG@10 relative to EASE tuned on the same training matrix as in that benchmark.
It measures how much each option is worth, and how far this family of spectral
models gets above EASE when nothing is left to chance in the choice of its
parameters; :mod:`benchmarks.bench_topn` measures what a grid search finds.

Besides the estimator's own parameters, four variants change the scores only,
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
* ``item_bias``: scores multiplied by ``exp(beta b_j)``, ``b_j`` the item's
  baseline bias of Koren, "Factorization meets the neighborhood" (KDD 2008,
  section 2.1): ``b_j = sum_u (r_uj - mu) / (25 + n_j)``, so that items rated
  above the mean rise.

Other kinds of model, alone and blended with the reference, test whether
a different model adds to this one (numpy on the host, whatever the device):

* ``NTK kernel ridge``: kernel ridge regression of the users' rows on
  themselves with the neural tangent kernel of an infinitely wide one-hidden-
  layer ReLU network, the model of Sachdeva, Dhaliwal, Wu and McAuley, "Infinite
  recommendation networks: a data-centric approach" (NeurIPS 2022), on the
  ratings to ``rating_power`` (:func:`ntk_relu`, :class:`KernelRidge`).
* ``RP3beta``: the item-item random walk of Paudel, Christoffel, Newell and
  Bernstein, "Updatable, accurate, diverse, and scalable recommendations for
  interactive applications" (TiiS 2017), :class:`RP3beta`.
* ``sparse neighbours``: the reference's own item-item weights ``W`` kept on
  the ``m`` largest ``|W_ij|`` of each column, as neighbourhood models and
  SLIM keep theirs sparse (:class:`Neighbours`; an ``m`` of at least the
  number of items keeps all of ``W``).
* ``EASE + higher-order pairs``: EASE with pairwise-interaction features, the
  model of Steck and Liang, "Negative interactions for improved collaborative
  filtering: don't go deeper, go higher" (RecSys 2021), :class:`HigherOrder`.
* ``blend``: the reference and another model, each row's scores standardised
  (mean 0, standard deviation 1 over the items) and mixed with a weight
  (:class:`Blend`).

A last table (:func:`selection`) chooses the point of ``bench_topn``'s
``SVDRecommender`` grid on each split's 80% in two ways, by cross-validation over
users (as ``bench_topn``'s grid search: held-out users folded in) and by a
per-user split of the ratings (as EASE's lambda is chosen: the same users in fit
and in scoring, as in the test parts), and scores each choice on the split's 20%.
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
    """(name, model, parameters) of every variant, the reference first."""
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
            ("drop_below=3", {}, {"drop_below": 3.0}),
            ("item_bias=-0.2", {}, {"item_bias": -0.2}),
            ("item_bias=0.2", {}, {"item_bias": 0.2}),
            ("item_bias=0.5", {}, {"item_bias": 0.5})]
    out = [(name, Variant(score), params) for name, params, score in out]
    ntk = KernelRidge(1.0)
    rp3 = RP3beta(1.0, 0.5)
    out += [("NTK kernel ridge, lambda=0.5", KernelRidge(0.5), {}),
            ("NTK kernel ridge, lambda=1", ntk, {}),
            ("NTK kernel ridge, lambda=2", KernelRidge(2.0), {}),
            ("NTK kernel ridge, lambda=4", KernelRidge(4.0), {}),
            ("RP3beta, alpha=1, beta=0.5", rp3, {}),
            ("sparse neighbours, m=100", Neighbours(100), {}),
            ("sparse neighbours, m=500", Neighbours(500), {}),
            ("sparse neighbours, m=2000", Neighbours(2000), {}),
            ("blend: 0.2 NTK kernel ridge, lambda=1", Blend(ntk, 0.2), {}),
            ("blend: 0.5 NTK kernel ridge, lambda=1", Blend(ntk, 0.5), {}),
            ("blend: 0.2 RP3beta", Blend(rp3, 0.2), {}),
            ("blend: 0.4 RP3beta", Blend(rp3, 0.4), {})]
    higher = HigherOrder(5000, 3000.0)
    out += [("EASE + higher-order pairs, 2000 pairs, lambda_pairs=1000",
             HigherOrder(2000, 1000.0), {}),
            ("EASE + higher-order pairs, 5000 pairs, lambda_pairs=3000", higher, {}),
            ("blend: 0.3 EASE + higher-order pairs (5000, 3000)", Blend(higher, 0.3), {})]
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
        if "item_bias" in self.score:
            col *= np.exp(float(self.score["item_bias"]) * item_biases(X))
        return rec, rec.item_factors_ * col.astype(rec.item_factors_.dtype)[:, None]

    def _users(self, rec, X_rows):
        return rec.transform(_drop_below(X_rows, self.score.get("drop_below")))

    def recommend(self, state, X_rows, rows, k, device):
        rec, V = state
        return bt._rank_factors(self._users(rec, X_rows), V, X_rows, k, device)

    def scores(self, state, X_rows):
        """The scores of every item for ``X_rows``, dense, float64."""
        rec, V = state
        U = self._users(rec, X_rows)
        return np.asarray(U, dtype=np.float64) @ np.asarray(V, dtype=np.float64).T


def item_biases(X, reg=25.0):
    """Koren's item baseline biases ``b_j = sum_u (r_uj - mu) / (reg + n_j)``."""
    X = sp.csr_matrix(X, dtype=np.float64)
    resid = X.data - X.data.mean()
    n = np.bincount(X.indices, minlength=X.shape[1])
    return np.bincount(X.indices, weights=resid, minlength=X.shape[1]) / (reg + n)


def _powered(X):
    """``X`` as a dense float64 array, stored values to the reference's
    ``rating_power`` (sign kept)."""
    A = sp.csr_matrix(X, dtype=np.float64).toarray()
    return np.sign(A) * np.abs(A) ** REFERENCE["rating_power"]


class DenseModel(bt.Model):
    """A model that scores every item of a row (``scores``), ranked by the one top-k
    over dense scores, seen items excluded."""

    def scores(self, state, X_rows):
        raise NotImplementedError

    def recommend(self, state, X_rows, rows, k, device):
        from sksvd._topk import topk_rows

        S = self.scores(state, X_rows)
        S[sp.csr_matrix(X_rows).toarray() != 0] = -np.inf
        return topk_rows(S, k)[1]


def ntk_relu(A, B):
    """Neural tangent kernel between the rows of ``A`` and ``B`` of ``f(x) =
    sqrt(2 / m) sum_r a_r relu(w_r . x)`` as ``m -> inf`` (``a_r``, ``w_r`` standard
    normal, no biases): with ``cos t = x . y / (|x| |y|)``,
    ``K(x, y) = x . y (pi - t) / pi + |x| |y| (sin t + (pi - t) cos t) / pi``, the
    gradient terms of the output weights (the arc-cosine kernel of Cho and Saul
    2009) and of the hidden weights. A zero row gives a zero kernel row."""
    na = np.linalg.norm(A, axis=1)
    nb = np.linalg.norm(B, axis=1)
    dot = A @ B.T
    norms = np.outer(na, nb)
    cos = np.clip(np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0), -1.0, 1.0)
    t = np.arccos(cos)
    return dot * (np.pi - t) / np.pi + norms * (np.sin(t) + (np.pi - t) * cos) / np.pi


class KernelRidge(DenseModel):
    """Kernel ridge regression of the users' (powered) rows on themselves with
    :func:`ntk_relu`: scores ``K(x, X) (K(X, X) + lam I)^-1 X``, ``lam`` relative
    to the mean of ``diag K(X, X)``."""

    def __init__(self, lam):
        self.lam = lam

    def fit(self, X, params, device):
        F = _powered(X)
        K = ntk_relu(F, F)
        K[np.diag_indices_from(K)] += self.lam * np.trace(K) / K.shape[0]
        return F, np.linalg.solve(K, F)

    def scores(self, state, X_rows):
        F, A = state
        return ntk_relu(_powered(X_rows), F) @ A


class RP3beta(DenseModel):
    """RP3beta: ``W_ij = ((P_iu P_uj)_ij)^alpha / n_j^beta``, ``P_ui`` the
    user -> item and ``P_iu`` the item -> user transition probabilities of the
    binary interactions, ``W_ii = 0``; scores ``x W`` with ``x`` binary."""

    def __init__(self, alpha, beta):
        self.alpha, self.beta = alpha, beta

    def fit(self, X, params, device):
        B = (sp.csr_matrix(X) != 0).astype(np.float64)
        n_u = np.maximum(np.asarray(B.sum(1)).ravel(), 1)
        n_i = np.maximum(np.asarray(B.sum(0)).ravel(), 1)
        P_ui = sp.diags(1 / n_u) @ B
        P_iu = sp.diags(1 / n_i) @ B.T
        W = (P_iu @ P_ui).toarray() ** self.alpha / n_i[None, :] ** self.beta
        np.fill_diagonal(W, 0.0)
        return W

    def scores(self, W, X_rows):
        return (sp.csr_matrix(X_rows) != 0).astype(np.float64) @ W


def reference_weights(rec, V):
    """The fitted reference's item-item weights ``W`` (dense): its scores are
    ``x^p W``, ``x^p`` the row to ``rating_power`` (the transform is linear in it)."""
    n = V.shape[0]
    eye = sp.identity(n, format="csr", dtype=np.float64)
    return np.vstack([np.asarray(rec.transform(eye[i:i + 2048]), dtype=np.float64)
                      @ np.asarray(V, dtype=np.float64).T for i in range(0, n, 2048)])


class Neighbours(DenseModel):
    """The reference's ``W`` kept on the ``m`` largest ``|W_ij|`` of each column
    (``m=None``: all of it)."""

    def __init__(self, m):
        self.m = m

    def fit(self, X, params, device):
        rec, V = Variant({}).fit(X, params, device)
        W = reference_weights(rec, V)
        if self.m is not None and self.m < W.shape[0]:
            drop = np.argpartition(-np.abs(W), self.m, axis=0)[self.m:]
            np.put_along_axis(W, drop, 0.0, axis=0)
        return W

    def scores(self, W, X_rows):
        return _powered(X_rows) @ W


class Blend(DenseModel):
    """``(1 - weight) z(reference) + weight z(other)``, ``z`` standardising each row."""

    def __init__(self, other, weight):
        self.other, self.weight = other, weight
        self.reference = Variant({})

    def fit(self, X, params, device):
        return self.reference.fit(X, params, device), self.other.fit(X, {}, device)

    def scores(self, state, X_rows):
        def z(S):
            return (S - S.mean(1, keepdims=True)) / np.maximum(S.std(1, keepdims=True), 1e-300)

        a, b = state
        return ((1 - self.weight) * z(self.reference.scores(a, X_rows))
                + self.weight * z(self.other.scores(b, X_rows)))


def co_rated_pairs(X, n_pairs, min_count=3):
    """``(i, j)``, ``i < j``: the ``n_pairs`` item pairs rated by the most users
    together (at least ``min_count``), most frequent first, ties in ``(i, j)`` order."""
    B = (sp.csr_matrix(X) != 0).astype(np.float64)
    C = sp.triu(B.T @ B, k=1).tocoo()
    keep = C.data >= min_count
    i, j, c = C.row[keep], C.col[keep], C.data[keep]
    order = np.lexsort((j, i, -c))[:n_pairs]
    return i[order], j[order]


def pair_indicators(X, pi, pj):
    """Users x pairs, dense 0/1: whether the user rated both items of the pair."""
    B = (sp.csc_matrix(X) != 0).astype(np.float64)
    return np.asarray(B[:, pi].multiply(B[:, pj]).toarray())


def pair_weights(Z, R, pi, pj, lam):
    """``C`` minimising ``|R - Z C|^2 + lam |C|^2`` with ``C[p, k] = 0`` whenever
    the pair ``p`` holds the item ``k`` (a pair may not predict its own items).

    The penalty is the same on every entry, so each column is the ridge solution
    over the pairs allowed to it; it is computed from the unconstrained one by
    Lagrange multipliers on the pairs holding the item, as EASE handles its
    diagonal: ``c_k = a_k - H^-1[:, S] (H^-1[S, S])^-1 a_k[S]`` with ``H = Z^T Z +
    lam I``, ``a_k = H^-1 Z^T r_k`` and ``S`` the pairs holding ``k``.
    """
    H = Z.T @ Z
    H[np.diag_indices_from(H)] += lam
    Hi = np.linalg.inv(H)
    C = Hi @ (Z.T @ R)
    holding = [[] for _ in range(R.shape[1])]
    for p, (a, b) in enumerate(zip(pi, pj, strict=True)):
        holding[a].append(p)
        holding[b].append(p)
    for k, S in enumerate(holding):
        if S:
            C[:, k] -= Hi[:, S] @ np.linalg.solve(Hi[np.ix_(S, S)], C[S, k])
            C[S, k] = 0.0                                     # zero up to rounding already
    return C


def ease_weights(X, T, lam):
    """EASE's ``B`` fitted to the target ``T``: ``min |T - X B|^2 + lam |B|^2``
    with ``diag(B) = 0``, through the users x users dual.

    ``B = P X^T T - P diag(g)``, ``P = (X^T X + lam I)^-1``, ``g_j = (P X^T
    T)_jj / P_jj``; with ``M = (X X^T + lam I)^-1``, ``P X^T = X^T M`` and ``P =
    (I - X^T M X) / lam``. With ``T = X`` this is EASE (``B = I - P diag(1 /
    diag P)``).
    """
    X, M, MX, d = bt.EASE.dual(X, lam)
    Q = np.asarray(X.T @ (M @ T))                                # P X^T T
    diag_P = (1.0 - d) / lam
    g = np.diag(Q) / diag_P
    return Q - (np.diag(g) - np.asarray(X.T @ (MX * g[None, :]))) / lam


class HigherOrder(DenseModel):
    """EASE with higher-order interactions, after Steck and Liang, "Negative
    interactions for improved collaborative filtering: don't go deeper, go higher"
    (RecSys 2021): scores ``x B + z C``, ``x`` the ratings as EASE takes them,
    ``z`` the 0/1 indicators of the ``n_pairs`` most co-rated item pairs
    (:func:`co_rated_pairs`), ``diag(B) = 0`` and no pair predicting its own items
    (:func:`pair_weights`). ``B`` and ``C`` are fitted by ``iters`` rounds of
    alternating ridge regressions on the residual of the other, from EASE
    (:func:`ease_weights`), whose ``lambda`` is tuned as in :mod:`benchmarks.bench_topn`;
    ``n_pairs=0`` is EASE.
    """

    def __init__(self, n_pairs, lam_pairs, iters=2):
        self.n_pairs, self.lam_pairs, self.iters = n_pairs, lam_pairs, iters

    def fit(self, X, params, device):
        lam = params.get("lambda")
        if lam is None:
            lam = bt.tune(bt.EASE(), X, device, quick=False, log=lambda *a: None)[0]["lambda"]
        X = sp.csr_matrix(X, dtype=np.float64)
        T = X.toarray()
        B = ease_weights(X, T, lam)
        pi, pj = co_rated_pairs(X, self.n_pairs)
        Z = pair_indicators(X, pi, pj)
        C = np.zeros((len(pi), X.shape[1]))
        for _ in range(self.iters if len(pi) else 0):
            C = pair_weights(Z, T - X @ B, pi, pj, self.lam_pairs)
            B = ease_weights(X, T - Z @ C, lam)
        return B, pi, pj, C

    def scores(self, state, X_rows):
        B, pi, pj, C = state
        X_rows = sp.csr_matrix(X_rows, dtype=np.float64)
        return np.asarray(X_rows @ B) + pair_indicators(X_rows, pi, pj) @ C


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


def validation_splits(device="cpu", log=print, datasets=DATASETS, quick=False):
    """``(dataset, split, X_fit, X_val, EASE's NDCG@10)`` of every validation split,
    and a row per split for EASE's table."""
    splits, ease_rows = [], []
    for ds in datasets:
        for split, X_fit, X_val in bt.splits(ds, quick=quick, validation=True):
            e, lam = ease_reference(X_fit, X_val, device)
            splits.append((ds, split, X_fit, X_val, e))
            ease_rows.append({"dataset": ds, "split": split, "EASE ndcg@10": e, "lambda": lam})
            log(f"[{NAME}] {ds} {split}: EASE {e:.4f} (lambda {lam:g})")
    return splits, ease_rows


def run(splits, device="cpu", log=print, variant_list=None):
    """A row per variant: its mean ratio to EASE on each data set of ``splits`` (those
    of :func:`validation_splits`), and each split's ratio."""
    variant_list = variants() if variant_list is None else variant_list
    datasets = list(dict.fromkeys(s[0] for s in splits))
    rows = []
    for name, model, params in variant_list:
        row = {"variant": name}
        for ds in datasets:
            ratios = [evaluate(model, params, X_fit, X_val, device) / e
                      for d, _, X_fit, X_val, e in splits if d == ds]
            row[f"{ds} / EASE"] = float(np.mean(ratios))
            row[f"{ds} per split"] = " ".join(f"{r:.3f}" for r in ratios)
        rows.append(row)
        log(f"[{NAME}] {name}: " + ", ".join(f"{ds} {row[f'{ds} / EASE']:.4f}"
                                             for ds in datasets))
    return rows


def selection(splits, device="cpu", log=print, quick=False):
    """The grid point of ``bench_topn``'s ``SVDRecommender grid-best`` chosen two ways on
    each validation split's 80%, refitted there and scored on its 20%.

    * ``users``: as ``bench_topn`` chooses it, ``GridSearchCV`` with the top-k scorer
      and ``KFold`` over users (held-out users folded in: new users);
    * ``ratings``: as EASE's lambda is chosen, a per-user 80/20 split of the
      ratings (:func:`benchmarks.bench_topn.tune`: the same users in fit and in
      scoring, as in the test parts).

    Rows: one per split and one mean per data set, as ratios to EASE.
    """
    # The search model is also the grid's points as fixed models (``grid``, ``fit``).
    search = bt.SearchModel("SVDRecommender", bt.SEARCH_GRIDS["SVDRecommender"], {})
    rows, means = [], {}
    for ds, split, X_fit, X_val, e in splits:
        cv = search.search(X_fit, device, quick)                 # refitted on X_fit
        by_ratings, _ = bt.tune(search, X_fit, device, quick, log=lambda *a: None)
        chosen = (("users", cv.best_params_, cv.best_estimator_),
                  ("ratings", by_ratings, search.fit(X_fit, by_ratings, device)))
        row = {"dataset": ds, "split": split}
        for how, params, state in chosen:
            res, _ = bt.evaluate_split(search, state, X_fit, X_val, device, ks=(10,))
            ratio = res["ndcg@10"] / e
            means.setdefault((ds, how), []).append(ratio)
            row[f"chosen by {how}"] = bt._fmt_params(params)
            row[f"by {how} / EASE"] = ratio
        rows.append(row)
        log(f"[{NAME}] choice {ds} {split}: by users {row['by users / EASE']:.4f}, "
            f"by ratings {row['by ratings / EASE']:.4f}")
    for ds in dict.fromkeys(s[0] for s in splits):
        rows.append({"dataset": ds, "split": "mean", "chosen by users": "",
                     "by users / EASE": float(np.mean(means[ds, "users"])),
                     "chosen by ratings": "",
                     "by ratings / EASE": float(np.mean(means[ds, "ratings"]))})
    return rows


def main(device="cpu", log=print, quick=False):
    t0 = time.perf_counter()
    datasets = ("ml-100k",) if quick else DATASETS
    splits, ease_rows = validation_splits(device, log, datasets, quick)
    variant_list = [v for v in variants() if v[0] in QUICK_VARIANTS] if quick else None
    rows = run(splits, device, log, variant_list)
    choice_rows = selection(splits, device, log, quick)
    notes = (
        "**Validation splits only: the test parts are not read.** Each training part "
        "of `benchmarks.bench_topn` (ml-100k `u1.base`..`u5.base`; the 80% parts of "
        "ml-latest-small, seeds 0, 1, 2) is split again per user 80/20 "
        f"(`random_state={bt.VALIDATION_SEED}`). Every variant is one fixed point (of "
        "`SVDRecommender` unless its name says otherwise), fitted on the 80% and "
        "scored on the 20% (relevant: rated >= "
        f"{bt.RELEVANCE:g}; seen items excluded; users with no relevant item skipped), "
        "as NDCG@10 divided by EASE's on the same split (EASE's lambda chosen on a "
        "further split of the 80%, as in `bench_topn`). Columns: the mean ratio over "
        "the splits, then each split's ratio. The reference point is "
        + ", ".join(f"`{k}={v!r}`" for k, v in REFERENCE.items())
        + "; every other row changes what its name says. Score-side variants "
        "(`zero diagonal`, `popularity_output`, `drop_below`, `item_bias`) and the "
        "other families (NTK kernel ridge, RP3beta, sparse neighbours, EASE with "
        "higher-order pairs, blends) are described in the module docstring. Every row "
        "is one more look at the same splits, so the best "
        "row is an optimistic estimate of its point, and differences of about 1% are "
        "within their noise. The last table chooses `bench_topn`'s `SVDRecommender` "
        "grid-best point on each split's 80% by `GridSearchCV` over users (as "
        "`bench_topn` does) or by a per-user split of its ratings (as EASE's lambda "
        "is chosen), and scores each choice on the 20% as a ratio to EASE. "
        f"Run time {time.perf_counter() - t0:.0f} s.")
    h.write_results(f"{NAME}_quick" if quick else NAME, rows, device=device, notes=notes,
                    tables={"EASE on each validation split": ease_rows,
                            "Choosing the grid-best point: over users or over ratings":
                            choice_rows},
                    extra={"reference": REFERENCE})
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="ml-100k u1, three variants, a one-point grid")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    main(device=args.device, quick=args.quick)
