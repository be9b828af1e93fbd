"""Write docs/errors.md: what every public function does with bad input, by calling it.

Usage: ``python docs/gen_errors.py [OUT.md]`` (default: docs/errors.md). ``make docs``
writes it into docs/_build/errors.md and fails when that differs from the committed
docs/errors.md, and tests/test_docs.py does the same, so the committed page always
shows what the code of the checkout does (run this script to rewrite it). Each row
is one call made here, on small data, and the exception it raised (type and
message) or, when it raised nothing, what it returned. The output is
deterministic (fixed data, hash seed 0, temporary paths shown as <tmp>).
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import tempfile
import warnings
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

import sksvd
from sksvd import (
    AsySVD,
    FunkSVD,
    SVDRecommender,
    TruncatedSVDCompressor,
    cli,
    datasets,
    image,
    linalg,
    metrics,
    model_selection,
    plotting,
)
from sksvd import io as sio
from sksvd import pipeline as spipeline

os.environ.setdefault("SKSVD_DEVICE", "cpu")  # read when an estimator resolves "auto"
TMP = Path(tempfile.mkdtemp(prefix="sksvd_errors_"))
RNG = np.random.default_rng(0)

# Small data: 30 users x 12 items, ratings 1..5, about 40% filled.
_dense = np.where(RNG.random((30, 12)) < 0.4, RNG.integers(1, 6, (30, 12)), 0).astype(float)
_dense[:, 0] = 3  # every user has a rating
X = sp.csr_matrix(_dense)
M = RNG.normal(size=(20, 8))
IMG = RNG.integers(0, 256, (16, 12, 3), dtype=np.uint8)


def _nan(a):
    a = np.array(a, dtype=float)
    a.flat[0] = np.nan
    return a


def _inf(a):
    a = np.array(a, dtype=float)
    a.flat[0] = np.inf
    return a


def _fitted(est):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X)


def _cli(*args):
    err = io.StringIO()
    with redirect_stderr(err):
        code = cli.main(list(args))
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    raise SystemExit(f"exit {code}: {lines[-1] if lines else ''}")


REC_KW = {"FunkSVD": {"n_epochs": 1}, "AsySVD": {"n_epochs": 1}, "SVDRecommender": {}}


def estimator_cases(cls, kw, data):
    name = cls.__name__
    small = data[:4, :3] if not sp.issparse(data) else data[:4, :3]
    yield name, "fit(X) with a NaN", lambda: cls(**kw).fit(_nan(data.toarray() if sp.issparse(data)
                                                                 else data))
    yield name, "fit(X) with an inf", lambda: cls(**kw).fit(_inf(data.toarray() if sp.issparse(data)
                                                                  else data))
    yield name, "fit(X) with X 1-D", lambda: cls(**kw).fit(np.ones(5))
    yield name, "fit(X) with X 3-D", lambda: cls(**kw).fit(np.ones((3, 4, 2)))
    yield name, "fit(X) with X empty (0 x 5)", lambda: cls(**kw).fit(np.ones((0, 5)))
    yield name, "fit(X) with strings", lambda: cls(**kw).fit(np.array([["a", "b"], ["c", "d"]]))
    yield name, "n_components=0", lambda: cls(**{**kw, "n_components": 0}).fit(data)
    yield name, "n_components=-1", lambda: cls(**{**kw, "n_components": -1}).fit(data)
    yield name, "n_components=1.5", lambda: cls(**{**kw, "n_components": 1.5}).fit(data)
    yield name, "n_components='ten'", lambda: cls(**{**kw, "n_components": "ten"}).fit(data)
    yield (name, "n_components above min(X.shape) (50 on a 4 x 3 X)",
           lambda: cls(**{**kw, "n_components": 50}).fit(small))
    yield name, "device='gpu'", lambda: cls(**{**kw, "device": "gpu"}).fit(data)
    yield name, "transform before fit", lambda: cls(**kw).transform(data)
    yield (name, "transform(X) with 5 columns after a fit on 12",
           lambda: _fitted(cls(**kw)).transform(np.ones((2, 5))))
    yield (name, "transform(X) with a NaN after fit",
           lambda: _fitted(cls(**kw)).transform(_nan(np.ones((2, data.shape[1])))))


def recommender_cases(cls):
    name = cls.__name__
    kw = {"n_components": 3, "random_state": 0, **REC_KW[name]}
    yield from estimator_cases(cls, kw, X)
    yield name, "fit(X) with every entry zero", lambda: cls(**kw).fit(np.zeros((5, 4)))
    yield name, "fit(X) with a negative rating", lambda: cls(**kw).fit(-X)
    yield name, "recommend(X, k=0)", lambda: _fitted(cls(**kw)).recommend(X[:2], k=0)
    yield name, "recommend(X, k=13) with 12 items", lambda: _fitted(cls(**kw)).recommend(X[:2],
                                                                                         k=13)
    yield (name, "recommend(X, exclude_seen='yes')",
           lambda: _fitted(cls(**kw)).recommend(X[:2], exclude_seen="yes"))
    yield (name, "recommend(row with no interaction)",
           lambda: _fitted(cls(**kw)).recommend(np.zeros((1, 12)), k=3))
    # FunkSVD's and AsySVD's defaults rank; their rating model is loss="mse".
    has_loss = name != "SVDRecommender"
    rkw, rating = ({**kw, "loss": "mse"}, "loss='mse': ") if has_loss else (kw, "")
    if has_loss:
        yield (name, "predict_ratings(users=[0], items=[0]) with the default loss",
               lambda: _fitted(cls(**kw)).predict_ratings([0], [0]))
    yield (name, f"{rating}predict_ratings(users=[99], items=[0]) with 30 users",
           lambda: _fitted(cls(**rkw)).predict_ratings([99], [0]))
    yield (name, f"{rating}predict_ratings(users=[0.5], items=[0])",
           lambda: _fitted(cls(**rkw)).predict_ratings([0.5], [0]))
    yield (name, f"{rating}predict_ratings(users=[0, 1], items=[0])",
           lambda: _fitted(cls(**rkw)).predict_ratings([0, 1], [0]))
    yield (name, "recommend(X, filter_items=[12]) with 12 items",
           lambda: _fitted(cls(**kw)).recommend(X[:2], filter_items=[12]))
    yield (name, "recommend(X, items=[-1])",
           lambda: _fitted(cls(**kw)).recommend(X[:2], items=[-1]))
    yield (name, "recommend(X[:3], users=[0, 1])",
           lambda: _fitted(cls(**kw)).recommend(X[:3], users=[0, 1]))
    yield (name, "similar_items([12]) with 12 items",
           lambda: _fitted(cls(**kw)).similar_items([12]))
    yield (name, "similar_users([0], k=0)",
           lambda: _fitted(cls(**kw)).similar_users([0], k=0))
    yield (name, "explain(X[:2], item=0)", lambda: _fitted(cls(**kw)).explain(X[:2], 0))
    yield (name, "explain(X[:1], item=[0, 1])",
           lambda: _fitted(cls(**kw)).explain(X[:1], [0, 1]))
    if has_loss:
        yield name, "learning_rate=-1", lambda: cls(**{**kw, "learning_rate": -1}).fit(X)
        yield name, "n_epochs=0", lambda: cls(**{**kw, "n_epochs": 0}).fit(X)
        yield name, "loss='hinge'", lambda: cls(**{**kw, "loss": "hinge"}).fit(X)
        yield (name, "early_stopping=True with the default loss",
               lambda: cls(**{**kw, "early_stopping": True}).fit(X))
        yield (name, f"{rating}learning_rate=1e6 (a step far too large)",
               lambda: cls(**{**rkw, "learning_rate": 1e6, "n_epochs": 3}).fit(X))


def cases():
    yield from estimator_cases(TruncatedSVDCompressor, {"n_components": 2, "random_state": 0}, M)
    yield ("TruncatedSVDCompressor", "inverse_transform(Z) with 3 columns, k=2",
           lambda: TruncatedSVDCompressor(2).fit(M).inverse_transform(np.ones((2, 3))))
    yield ("TruncatedSVDCompressor", "criterion='variance'",
           lambda: TruncatedSVDCompressor(0.5, criterion="variance").fit(M))
    for cls in (SVDRecommender, FunkSVD, AsySVD):
        yield from recommender_cases(cls)

    yield "image.compress_image", "img 1-D", lambda: image.compress_image(np.ones(10), 2)
    yield "image.compress_image", "img 4-D", lambda: image.compress_image(np.ones((4, 4, 3, 2)), 2)
    yield "image.compress_image", "img with a NaN", lambda: image.compress_image(_nan(IMG / 255), 2)
    yield "image.compress_image", "img of strings", lambda: image.compress_image(
        np.array([["a", "b"], ["c", "d"]]), 1)
    yield "image.compress_image", "n_components=0", lambda: image.compress_image(IMG, 0)
    yield "image.compress_image", "n_components=100 on 16 x 36", lambda: image.compress_image(
        IMG, 100)
    yield "image.compress_image", "n_components=1.5", lambda: image.compress_image(IMG, 1.5)
    yield "image.compress_image", "neither n_components nor psnr", lambda: image.compress_image(
        IMG)
    yield "image.compress_image", "both n_components and psnr", lambda: image.compress_image(
        IMG, 2, psnr=30.0)
    yield "image.compress_image", "psnr=-5", lambda: image.compress_image(IMG, psnr=-5.0)
    yield "image.compress_image", "factor_dtype='int8'", lambda: image.compress_image(
        IMG, 2, factor_dtype="int8")
    yield "image.rank_profile", "ranks=[0]", lambda: image.rank_profile(IMG, [0], ssim=False)
    yield "image.rank_profile", "ranks=[100] on 16 x 36", lambda: image.rank_profile(
        IMG, [100], ssim=False)
    yield "image.rank_profile", "ranks=[]", lambda: image.rank_profile(IMG, [], ssim=False)
    yield "image.psnr", "shapes (16, 12, 3) and (16, 12)", lambda: image.psnr(IMG, IMG[:, :, 0])
    yield "image.psnr", "reconstructed with a NaN", lambda: image.psnr(IMG / 255, _nan(IMG / 255))
    yield "image.image_to_matrix", "4-D array", lambda: image.image_to_matrix(np.ones((2,) * 4))
    yield "image.matrix_to_image", "M (16, 36) to shape (16, 12, 4)", lambda: (
        image.matrix_to_image(np.ones((16, 36)), (16, 12, 4)))

    import pandas as pd

    yield "plotting.plot_rank_profile", "DataFrame without 'psnr' and 'nbytes'", lambda: (
        plotting.plot_rank_profile(pd.DataFrame({"rank": [1], "compression_ratio": [0.1]})))
    yield "plotting.plot_rank_profile", "empty DataFrame", lambda: plotting.plot_rank_profile(
        pd.DataFrame({"rank": [], "psnr": [], "nbytes": []}))
    yield "plotting.plot_training", "estimator not fitted", lambda: plotting.plot_training(
        FunkSVD())

    y = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]]))
    ids = np.array([[0, 1], [1, 2]])
    yield "metrics.ndcg_at_k", "k=0", lambda: metrics.ndcg_at_k(y, ids, k=0)
    yield "metrics.ndcg_at_k", "k=5 with ids of 2 columns", lambda: metrics.ndcg_at_k(y, ids, k=5)
    yield "metrics.ndcg_at_k", "ids with 3 rows, y_true with 2", lambda: metrics.ndcg_at_k(
        y, np.vstack([ids, ids[:1]]), k=2)
    yield "metrics.ndcg_at_k", "ids with item 7 of 3", lambda: metrics.ndcg_at_k(
        y, np.array([[7, 1], [1, 2]]), k=2)
    yield "metrics.ndcg_at_k", "ids of floats", lambda: metrics.ndcg_at_k(y, ids + 0.5, k=2)
    yield "metrics.ndcg_at_k", "repeated id in a row", lambda: metrics.ndcg_at_k(
        y, np.array([[0, 0], [1, 2]]), k=2)
    yield "metrics.ndcg_at_k", "y_true with a NaN", lambda: metrics.ndcg_at_k(
        _nan(y.toarray()), ids, k=2)
    yield "metrics.ndcg_at_k", "gains='log'", lambda: metrics.ndcg_at_k(y, ids, k=2, gains="log")
    yield "metrics.ndcg_at_k", "no user has a relevant item", lambda: metrics.ndcg_at_k(
        np.zeros((2, 3)), ids, k=2)
    yield "metrics.recall_at_k", "denominator='all'", lambda: metrics.recall_at_k(
        y, ids, k=2, denominator="all")
    yield "metrics.topk_metrics", "metrics=('auc',)", lambda: metrics.topk_metrics(
        y, ids, k=2, metrics=("auc",))
    yield "metrics.catalog_coverage", "n_items=0", lambda: metrics.catalog_coverage(ids, 0)
    yield "metrics.rmse", "lengths 3 and 2", lambda: metrics.rmse([1, 2, 3], [1, 2])
    yield "metrics.rmse", "y_pred with a NaN", lambda: metrics.rmse([1, 2], [np.nan, 2])
    yield "metrics.rmse", "empty arrays", lambda: metrics.rmse([], [])
    yield "metrics.mae", "strings", lambda: metrics.mae(["a"], ["b"])

    ms = model_selection
    yield "model_selection.make_topk_scorer", "metric='auc'", lambda: ms.make_topk_scorer("auc")
    yield "model_selection.make_topk_scorer", "k=0", lambda: ms.make_topk_scorer("ndcg", k=0)
    yield "model_selection.make_topk_scorer", "holdout=1.5", lambda: ms.make_topk_scorer(
        holdout=1.5)
    yield "model_selection.make_topk_scorer", "holdout='top:x'", lambda: ms.make_topk_scorer(
        holdout="top:x")
    yield "model_selection.make_topk_scorer", "scoring an unfitted estimator", lambda: (
        ms.make_topk_scorer()(SVDRecommender(2), X))
    yield ("model_selection.make_topk_scorer", "k=13 on 12 items, at scoring time",
           lambda: ms.make_topk_scorer(k=13)(_fitted(SVDRecommender(2)), X))
    yield "model_selection.make_rating_scorer", "metric='auc'", lambda: ms.make_rating_scorer(
        "auc")
    yield ("model_selection.train_test_split_interactions", "test_size=0",
           lambda: ms.train_test_split_interactions(X, test_size=0))
    yield ("model_selection.train_test_split_interactions", "test_size=1.5",
           lambda: ms.train_test_split_interactions(X, test_size=1.5))
    yield ("model_selection.train_test_split_interactions", "mode='random'",
           lambda: ms.train_test_split_interactions(X, mode="random"))
    yield ("model_selection.train_test_split_interactions", "X with a NaN",
           lambda: ms.train_test_split_interactions(_nan(X.toarray())))
    yield "model_selection.leave_k_out", "k=0", lambda: ms.leave_k_out(X, k=0)
    yield "model_selection.evaluate", "metrics=('auc',)", lambda: ms.evaluate(
        SVDRecommender(2), X, X, metrics=("auc",))
    yield "model_selection.evaluate", "X_test of another shape", lambda: ms.evaluate(
        SVDRecommender(2), X, X[:, :5])
    yield ("sklearn cross_val_score(FunkSVD(loss='mse'), X)",
           "scoring='neg_root_mean_squared_error' (error_score='raise')",
           lambda: cross_val_score(FunkSVD(2, n_epochs=1, loss="mse"), X, cv=2,
                                   error_score="raise", scoring="neg_root_mean_squared_error"))
    yield "pipeline.recommend", "a Pipeline ending in Normalizer", lambda: spipeline.recommend(
        make_pipeline(Normalizer()).fit(X), X)

    ds = datasets
    yield "datasets.load_movielens", "name='999k'", lambda: ds.load_movielens("999k")
    yield "datasets.load_movielens", "fold='u9'", lambda: ds.load_movielens(
        "100k", fold="u9", data_home=TMP)
    yield ("datasets.load_movielens", "release absent, download_if_missing=False",
           lambda: ds.load_movielens("100k", data_home=TMP, download_if_missing=False))
    df = pd.DataFrame({"userId": [1, 1, 2], "movieId": [10, 10, 11], "rating": [4, 5, 3]})
    yield "datasets.load_ratings", "no column 'itemId'", lambda: ds.load_ratings(
        df, item_col="itemId")
    yield "datasets.load_ratings", "a duplicate (user, item)", lambda: ds.load_ratings(df)
    small = ds.load_ratings(df.drop_duplicates(["userId", "movieId"]))
    yield "datasets Bunch.user_rows", "an unknown user id 99", lambda: small.user_rows([1, 99])
    yield "datasets Bunch.item_columns", "an unknown item id 'x'", lambda: small.item_columns("x")
    yield "datasets Bunch.find_items", "data without titles", lambda: small.find_items("Star")
    yield "datasets.load_ratings", "a rating 'five'", lambda: ds.load_ratings(
        df.assign(rating=["five", 4, 3], movieId=[10, 11, 12]))
    yield "datasets.load_ratings", "a missing user id", lambda: ds.load_ratings(
        df.assign(userId=[1, None, 2], movieId=[10, 11, 12]))
    yield "datasets.load_ratings", "a file that does not exist", lambda: ds.load_ratings(
        TMP / "nope.csv")

    yield "io.save", "a non-sksvd object", lambda: sio.save({"a": 1}, TMP / "m.npz")
    yield "io.save", "an unfitted estimator", lambda: sio.save(SVDRecommender(2), TMP / "u.npz")
    yield "io.load", "a file that does not exist", lambda: sio.load(TMP / "missing.npz")

    def _flipped():
        path = TMP / "flip.npz"
        sio.save(_fitted(SVDRecommender(2)), path)
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
        return sio.load(path)

    def _cut():
        path = TMP / "cut.npz"
        sio.save(_fitted(SVDRecommender(2)), path)
        path.write_bytes(path.read_bytes()[:200])
        return sio.load(path)

    def _pickled():
        path = TMP / "pickle.npz"
        path.write_bytes(pickle.dumps(SVDRecommender(2)))
        return sio.load(path)

    yield "io.load", "one byte flipped", _flipped
    yield "io.load", "file cut at 200 bytes", _cut
    yield "io.load", "a pickle payload", _pickled

    import torch

    A = torch.randn(20, 8)
    yield "linalg.randomized_svd", "n_components=0", lambda: linalg.randomized_svd(A, 0)
    yield "linalg.randomized_svd", "n_components=9 on 20 x 8", lambda: linalg.randomized_svd(A, 9)
    yield "linalg.exact_svd", "n_components=9 on 20 x 8", lambda: linalg.exact_svd(A, 9)
    yield "linalg.exact_svd", "a numpy array", lambda: linalg.exact_svd(M, 2)
    yield "linalg.truncated_svd", "X with a NaN", lambda: linalg.truncated_svd(_nan(M), 2)
    yield "linalg.truncated_svd", "algorithm='qr'", lambda: linalg.truncated_svd(
        M, 2, algorithm="qr")
    yield "linalg.truncated_svd", "n_components=0", lambda: linalg.truncated_svd(M, 0)

    yield "sksvd compress (CLI)", "--rank 0", lambda: _cli("compress", "x.png", "--rank", "0")
    yield "sksvd compress (CLI)", "no --rank/--energy/--psnr", lambda: _cli("compress", "x.png")
    yield "sksvd compress (CLI)", "a missing IMAGE", lambda: _cli("compress", str(TMP / "no.png"),
                                                                  "--rank", "2")
    yield "sksvd recommend (CLI)", "--model svd", lambda: _cli("recommend", "--model", "svd",
                                                               "--user", "1")
    yield "sksvd recommend (CLI)", "MovieLens absent, --no-download", lambda: _cli(
        "recommend", "--user", "1", "--no-download", "--data-home", str(TMP))
    yield "sksvd recommend (CLI)", "--ratd 50:5 (misspelt)", lambda: _cli(
        "recommend", "--ratd", "50:5")
    yield "sksvd recommend (CLI)", "-o /nonexistent/dir/top.csv", lambda: _cli(
        "recommend", "--user", "1", "-o", "/nonexistent/dir/top.csv")
    yield "sksvd similar (CLI)", "no --item", lambda: _cli("similar")
    yield "sksvd evaluate (CLI)", "--models puresvd,nope", lambda: _cli(
        "evaluate", "--models", "puresvd,nope")


def _short(text, limit=150):
    text = " ".join(str(text).split())
    text = text.replace(str(TMP), "<tmp>").replace(str(Path.home()), "~")
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return text.replace("|", "\\|")


def _outcome(thunk):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = thunk()
        except SystemExit as exc:
            return "exit status", _short(exc.code)
        except Exception as exc:  # noqa: BLE001 - recording what each call raises
            return type(exc).__name__, _short(exc)
    notes = [f"{w.category.__name__}: {w.message}" for w in caught
             if issubclass(w.category, (UserWarning, RuntimeWarning))]
    result = f"no error; returns {_describe(value)}"
    if notes:
        result += f" (warns {_short(notes[0], 100)})"
    return "—", _short(result)


def _describe(value):
    if isinstance(value, tuple):
        return "(" + ", ".join(_describe(v) for v in value) + ")"
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, type):
        return f"{type(value).__name__} of shape {tuple(shape)}"
    if hasattr(value, "get_params"):
        arrays = [v for k, v in vars(value).items()
                  if k.endswith("_") and isinstance(v, np.ndarray) and v.dtype.kind == "f"]
        finite = all(np.isfinite(a).all() for a in arrays)
        return (f"the fitted {type(value).__name__} "
                f"({'all fitted arrays finite' if finite else 'NaN or inf in a fitted array'})")
    if isinstance(value, Path):
        return "the path written"
    return repr(value)


def main(out):
    rows = {}
    for func, bad, thunk in cases():
        rows.setdefault(func, []).append((bad, *_outcome(thunk)))
    lines = [
        "# Bad input: what each public function does with it",
        "",
        "Generated by `docs/gen_errors.py` (checked by `make docs`) from calls made on small",
        f"data: every row is a real call of this version of sksvd ({sksvd.__version__}) and",
        "what it raised, or what it returned when it raised nothing (marked —).",
        "`InvalidParameterError` is scikit-learn's parameter check; it is a subclass of both",
        "`ValueError` and `TypeError`. Messages name the argument and the value seen; <tmp>",
        "stands for a temporary folder. The command line turns bad usage into exit status 2",
        "with one line on standard error (see [the command line](cli.md)).",
        "",
    ]
    for func, entries in rows.items():
        lines += [f"## `{func}`", "", "| bad input | raises | message or result |",
                  "| --- | --- | --- |"]
        lines += [f"| {bad} | {kind} | {msg} |" for bad, kind, msg in entries]
        lines.append("")
    Path(out).write_text("\n".join(lines), encoding="utf-8")
    n = sum(len(e) for e in rows.values())
    quiet = sum(1 for e in rows.values() for r in e if r[1] == "—")
    print(f"{out}: {n} calls of {len(rows)} functions; {quiet} raised nothing")


if __name__ == "__main__":
    if os.environ.get("PYTHONHASHSEED") != "0":
        # Messages that print a set (scikit-learn's parameter checks) vary with the hash
        # seed: fix it so that the table changes only when the code does.
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  {**os.environ, "PYTHONHASHSEED": "0"})
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("errors.md"))
