"""The sksvd demo (``python -m sksvd.demo``, or ``make demo``).

1. Compresses the two scikit-learn sample images (``china.jpg``,
   ``flower.jpg``) by truncated SVD: a table of rank, energy, size, PSNR,
   SSIM and JPEG at the same number of bytes, the figure of energy and size
   against rank, and a strip of reconstructions.
2. When MovieLens 100K is found (``$SKSVD_DATA_HOME``, else ``../shared/data``
   beside a checkout, else ``~/sksvd_data``; see :func:`sksvd.cli.find_data_home`),
   trains PureSVD, FunkSVD and AsySVD with their defaults (fitted for top-N
   lists) and FunkSVD with ``loss="mse"`` (fitted to the ratings) on the
   official fold ``u1``, prints their NDCG@10, recall, precision, RMSE and
   MAE side by side, and recommends for a new user who rated four films,
   folded in without a refit.

Figures and tables go to ``demo_output/`` (``--output``). It runs in about a
minute or two on 2 CPU cores; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

__all__ = ["main", "NEW_USER"]

#: The new user of the demo: MovieLens 100K movie id -> rating (Star Wars,
#: The Empire Strikes Back, Return of the Jedi, Raiders of the Lost Ark).
NEW_USER = {50: 5.0, 172: 5.0, 181: 4.0, 174: 5.0}

_IMAGES = ("china.jpg", "flower.jpg")
_PROFILE_RANKS = (1, 2, 5, 10, 20, 30, 50, 80, 100, 130, 200, 300, 427)
_STRIP_RANKS = (5, 20, 50, 130)


class _Clock:
    def __init__(self):
        self.t0 = time.perf_counter()

    def step(self, message):
        print(f"[{time.perf_counter() - self.t0:6.1f} s] {message}", flush=True)


def _strip_figure(img, name, results):
    from matplotlib.figure import Figure

    n = len(results) + 1
    h, w = img.shape[:2]
    fig = Figure(figsize=(3.0 * n, 3.0 * h / w + 0.7), layout="constrained")
    axes = fig.subplots(1, n)
    axes[0].imshow(img)
    axes[0].set_title(f"original\n{img.nbytes / 1024:,.0f} KiB raw", fontsize=9)
    for ax, (k, recon, db, ratio) in zip(axes[1:], results, strict=True):
        ax.imshow(recon)
        ax.set_title(f"rank {k}: {db:.1f} dB\nraw / factors = {ratio:.2f}", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"{name}: rank-k SVD reconstructions", fontsize=11)
    return fig


def _images_part(out, clock, device, quick=False):
    import numpy as np
    from sklearn.datasets import load_sample_image

    from .image import compress_image, matrix_to_image, psnr, rank_profile
    from .plotting import plot_rank_profile

    rows = []
    for name in _IMAGES:
        img = load_sample_image(name)
        if quick:  # every 4th pixel: the same pictures, 16 times fewer pixels
            img = np.ascontiguousarray(img[::4, ::4])
        stem = name.split(".")[0]
        max_rank = min(img.shape[0], img.shape[1] * img.shape[2])
        ranks = sorted({min(r, max_rank) for r in _PROFILE_RANKS})
        strip_ranks = sorted({min(r, max_rank) for r in _STRIP_RANKS})
        clock.step(f"{name} {img.shape}: SVD at ranks {ranks[0]}..{ranks[-1]}, PSNR, SSIM, "
                   "JPEG at the same bytes")
        profile = rank_profile(img, ranks, device=device)
        fig = plot_rank_profile(profile, title=f"{name}: quality and size against rank")
        fig.savefig(out / f"{stem}_rank_profile.png", dpi=110)
        # One SVD at the largest rank of the strip; the smaller ranks are its leading parts
        # (each component is quantized with its own scale, so they are the rank-k images).
        ci = compress_image(img, max(strip_ranks), algorithm="full", device=device)
        Z, Vt = ci.factors()
        strip = []
        for k in strip_ranks:
            M = Z[:, :k] @ Vt[:k]
            recon = matrix_to_image(M, img.shape, dtype=img.dtype, value_range=ci.value_range)
            ratio = float(profile.loc[profile["rank"] == k, "compression_ratio"].iloc[0])
            strip.append((k, recon, psnr(img, recon), ratio))
        _strip_figure(img, name, strip).savefig(out / f"{stem}_reconstructions.png", dpi=110)
        seed = compress_image(img, 0.8, criterion="singular_values", device=device)
        energy80 = compress_image(img, 0.8, device=device)
        profile.insert(0, "image", name)
        profile.to_csv(out / f"{stem}_rank_profile.csv", index=False)

        print(f"\n{name} ({img.shape[0]} x {img.shape[1]} x {img.shape[2]}, "
              f"{img.nbytes:,} bytes raw; factors stored in 8 bits; "
              "raw/size = raw bytes / factor bytes)")
        table = profile[["rank", "energy", "singular_value_share", "compression_ratio",
                         "psnr", "ssim", "jpeg_psnr"]].rename(columns={
                             "singular_value_share": "sum_s_share",
                             "compression_ratio": "raw/size",
                             "psnr": "psnr_dB", "jpeg_psnr": "jpeg_dB_same_bytes"})
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}",
                              na_rep="n/a"))
        print("  80% of sum s_i ('80% of the variance' in the blog post 'SVD for Image "
              "Compression and Recommender Systems'): "
              f"rank {seed.n_components}, the raw image is {seed.compression_ratio:.2f} times the factors' bytes, "
              f"{psnr(img, seed.reconstruct()):.1f} dB")
        print(f"  80% of the energy sum s_i^2: rank {energy80.n_components} "
              f"({psnr(img, energy80.reconstruct()):.1f} dB): energy is a poor guide to quality")
        jpeg = profile["jpeg_psnr"].to_numpy(dtype=float)
        better = int(np.sum(jpeg > profile["psnr"].to_numpy(dtype=float)))
        print(f"  JPEG at the same number of bytes is sharper at {better} of {len(ranks)} "
              "ranks: SVD shows structure, it is not a rival to JPEG")
        rows.append(profile)
    print(f"\nfigures: {out}/china_rank_profile.png, {out}/china_reconstructions.png "
          f"(and flower_*)")
    return rows


def _movielens_help(home):
    return (
        f"MovieLens 100K was not found under {home}.\n"
        "To run the recommender part, get it (about 5 MB) with\n"
        "    python -c \"from sksvd.datasets import load_movielens; load_movielens('100k')\"\n"
        "which downloads the official zip to ~/sksvd_data and checks its sha256, or point\n"
        "SKSVD_DATA_HOME at a folder that holds ml-100k/ (u.data, u.item, u1.base, ...),\n"
        "then run `make demo` again."
    )


def _short(text, width=34):
    return text if len(text) <= width else text[:width - 1] + "…"


def _movielens_part(out, clock, home, device, seed, quick=False):
    import numpy as np
    import scipy.sparse as sp

    from . import AsySVD, FunkSVD, SVDRecommender
    from .cli import format_table
    from .datasets import load_movielens
    from .model_selection import evaluate
    from .plotting import plot_training

    clock.step(f"MovieLens 100K from {home}, official fold u1 (80,000 train / 20,000 test)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_movielens("100k", fold="u1", data_home=home, download_if_missing=False)
    for w in caught:
        print(f"  note: {w.message}")
    # The defaults are fitted for top-N lists; FunkSVD(loss="mse") fits the observed
    # ratings (early stopping on 10% of them keeps the best epoch and draws the
    # validation curve of its training figure).
    models = {
        "PureSVD": SVDRecommender(device=device, random_state=seed),
        "FunkSVD": FunkSVD(device=device, random_state=seed, verbose=1),
        "AsySVD": AsySVD(device=device, random_state=seed, verbose=1),
        "FunkSVD(loss='mse')": FunkSVD(loss="mse", early_stopping=True, device=device,
                                       random_state=seed, verbose=1),
    }
    figures = {"FunkSVD(loss='mse')": "funksvd_training.png",
               "AsySVD": "asysvd_training.png", "FunkSVD": "funksvd_als_training.png"}
    rating_models = {"FunkSVD(loss='mse')"}
    if quick:  # a smoke run: small models, few epochs
        models["PureSVD"].set_params(n_components=16)
        for name in ("FunkSVD", "AsySVD", "FunkSVD(loss='mse')"):
            models[name].set_params(n_components=16, n_epochs=2)
    rows = []
    for name, model in models.items():
        clock.step(f"fitting {name} on {ds.X_train.nnz:,} ratings")
        t0 = time.perf_counter()
        model.fit(ds.X_train)
        fit_s = time.perf_counter() - t0
        metrics = ("ndcg", "recall", "precision")
        if name in rating_models:
            metrics += ("rmse", "mae")
        res = evaluate(model, ds.X_train, ds.X_test, metrics=metrics, k=10, fit=False)
        rows.append({"model": name, "ndcg@10": res["ndcg"], "recall@10": res["recall"],
                     "precision@10": res["precision"], "rmse": res.get("rmse", float("nan")),
                     "mae": res.get("mae", float("nan")), "fit_s": f"{fit_s:.2f}",
                     "users": res["n_users"]})
        if name in figures:
            plot_training(model, title=f"{name} on MovieLens 100K u1").savefig(
                out / figures[name], dpi=110)
    clock.step("results on the u1 test ratings")
    print("Top-10 lists exclude each user's training items; every test rating is relevant;")
    print("RMSE/MAE over the 20,000 test ratings (scores fitted to rank are not ratings: n/a).")
    print(format_table(rows))
    print("PureSVD, FunkSVD and AsySVD with their defaults are fitted for top-N lists, from")
    print("what users chose to rate; FunkSVD(loss='mse') fits the ratings themselves (RMSE)")
    print("and ranks far worse (Cremonesi, Koren and Turrin 2010).")
    with open(out / "movielens_u1.csv", "w") as fh:
        fh.write(",".join(rows[0]) + "\n")
        for r in rows:
            fh.write(",".join(str(v) for v in r.values()) + "\n")

    cols = [int(ds.item_index[i]) for i in NEW_USER]
    x = sp.csr_matrix((np.asarray(list(NEW_USER.values()), dtype=np.float32),
                       (np.zeros(len(cols), dtype=np.int64), np.asarray(cols))),
                      shape=(1, ds.X.shape[1]))
    titles = ds.items["title"].to_numpy()
    print()
    clock.step("a new user, folded in without refitting, rated: " + ", ".join(
        f"{titles[c]} {v:g}" for c, v in zip(cols, NEW_USER.values(), strict=True)))
    recs = {name: model.recommend(x, k=10)[0][0] for name, model in models.items()
            if name not in rating_models}
    table = [{"rank": r + 1, **{name: _short(str(titles[ids[r]])) if ids[r] >= 0 else "-"
                                for name, ids in recs.items()}} for r in range(10)]
    print(format_table(table))
    return rows


def main(argv=None):
    """Run the demo; return 0.

    Parameters
    ----------
    argv : list of str, default=None
        Command-line arguments (``--output``, ``--data-home``, ``--device``,
        ``--seed``, ``--skip-images``, ``--skip-movielens``, ``--quick``).

    Returns
    -------
    int
        The exit status: 0 when the demo ran, 2 on bad arguments.

    Examples
    --------
    >>> from sksvd.demo import main
    >>> main(["--help"])  # doctest: +ELLIPSIS
    usage: python -m sksvd.demo ...
    0
    """
    from .cli import find_data_home

    parser = argparse.ArgumentParser(
        prog="python -m sksvd.demo",
        description="Compress the sample images and compare the three recommenders on "
                    "MovieLens 100K; figures and tables to --output.")
    parser.add_argument("--output", default="demo_output", help="default: demo_output")
    parser.add_argument("--data-home", default=None,
                        help="folder holding ml-100k/ (default: see sksvd.cli.find_data_home)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="random_state (default: 0)")
    parser.add_argument("--skip-images", action="store_true")
    parser.add_argument("--skip-movielens", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: images at 1/4 size, small models, 2 epochs")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    clock = _Clock()
    clock.step(f"sksvd demo; figures and tables go to {out}/")
    if not args.skip_images:
        _images_part(out, clock, args.device, quick=args.quick)
    if not args.skip_movielens:
        home = Path(args.data_home).expanduser() if args.data_home else find_data_home()
        print()
        if (home / "ml-100k" / "u.data").is_file():
            _movielens_part(out, clock, home, args.device, args.seed, quick=args.quick)
        else:
            print(_movielens_help(home))
    print()
    clock.step(f"done; files in {out}/: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
