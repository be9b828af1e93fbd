"""Growth: fit time and peak memory against the work, with the fitted growth exponent.

Run ``python -m benchmarks.bench_growth [--quick] [--device cpu|cuda] [--sizes 1M,5M,20M]``.

Recommenders: fit time and peak memory against the number of interactions
(power-law synthetic, seed 0: 1M, 5M, 20M and 50M where the machine has the
memory), sksvd's three recommenders beside scipy ``svds``, scikit-learn
``randomized_svd`` and implicit's ALS and BPR, all at rank 64. Compressor:
fit time against the image size, beside scikit-learn's randomized
``TruncatedSVD`` and LAPACK's full SVD. Each fit runs in a fresh child process
(forkserver) with a time limit; a method is not run at a size where its time
at the previous size, scaled linearly, would pass the limit.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from . import _harness as h

NAME = "growth"
RANK = 64
# nnz -> (users, items): 100 interactions per user, 4 users per item.
SIZES = {"1M": 1_000_000, "5M": 5_000_000, "20M": 20_000_000, "50M": 50_000_000}
IMAGE_SIDES = (256, 512, 1024, 2048)
IMAGE_SIDES_QUICK = (256, 512, 1024)

PROTOCOL = f"""\
**Growth protocol.** Matrices: `harness.powerlaw_csr(n_users, n_items, nnz, seed=0)`
with 100 interactions per user and 4 users per item (1M: 10,000 x 2,500; 5M:
50,000 x 12,500; 20M: 200,000 x 50,000; 50M: 500,000 x 125,000), ratings 1..5.
Every method is fitted at rank {RANK}: sksvd `SVDRecommender(n_components={RANK})`,
`FunkSVD(n_components={RANK})` (its default epochs) and
`AsySVD(n_components={RANK}, n_epochs=2)` (2 epochs: its fits are long; the growth
exponent does not depend on a fixed epoch count), scipy `svds(X, k={RANK})` (float32 ARPACK), scikit-learn
`randomized_svd(X, {RANK}, random_state=0)` (its default `n_iter="auto"`),
implicit ALS (`factors={RANK}`, 15 iterations, ratings as confidences) and BPR
(`factors={RANK}`, 100 iterations, 20 with `--quick`, binarized), implicit with BLAS on one thread.
Each fit runs in a fresh child process; time is the fit alone; peak memory is
the child's peak resident size beyond its size once the matrix was loaded.
The growth exponent is the slope of a least-squares line through
(log nnz, log seconds). The machine is shared with other work (2 cores):
timings are noisy; at the smallest size a fit under 10 s is the best of 3 runs,
otherwise times are single runs."""


def _shape(nnz):
    users = nnz // 100
    return users, max(users // 4, 1)


def _mb(nbytes):
    return nbytes / 2**20


# ---------------------------------------------------------------------------- fits (children)
def _fit_child(method, X, device):
    """Fit one method on ``X`` in this (child) process; return its time and peak memory."""
    fit = _FITS[method]
    prep = fit(X, device, prepare=True)
    base = h.current_rss()
    h.reset_peak_rss()
    t0 = time.perf_counter()
    info = fit(X, device, state=prep) or {}
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - t0,
            "peak_extra_mb": _mb(max(h.peak_rss() - base, 0)), **info}


def _sksvd(cls_name, **params):
    def fit(X, device, prepare=False, state=None):
        import sksvd

        cls = getattr(sksvd, cls_name)
        if prepare:  # a tiny fit first: torch's start-up is not the method's time
            cls(n_components=4, random_state=0, device=device, **params).fit(X[:500])
            return None
        est = cls(n_components=RANK, random_state=0, device=device, **params).fit(X)
        return {"algorithm": getattr(est, "algorithm_", ""), "device": str(device)}

    return fit


def _svds(X, device, prepare=False, state=None):
    from scipy.sparse.linalg import svds

    if not prepare:
        svds(X, k=RANK, random_state=0)
        return {"algorithm": "ARPACK"}


def _randomized_svd(X, device, prepare=False, state=None):
    from sklearn.utils.extmath import randomized_svd

    if not prepare:
        randomized_svd(X, RANK, random_state=0)
        return {"algorithm": "randomized"}


def _implicit(kind):
    def fit(X, device, prepare=False, state=None):
        from threadpoolctl import threadpool_limits

        if prepare:
            if kind == "bpr":
                X = X.copy()
                X.data[:] = 1.0
            return X
        if kind == "als":
            from implicit.als import AlternatingLeastSquares as cls
            params = {"iterations": 15}
        else:
            from implicit.bpr import BayesianPersonalizedRanking as cls
            params = {"iterations": int(os.environ.get("SKSVD_GROWTH_BPR_ITERATIONS", 100))}
        use_gpu = False
        if str(device).startswith("cuda"):
            import implicit.gpu

            use_gpu = bool(implicit.gpu.HAS_CUDA)
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls(factors=RANK, random_state=0, use_gpu=use_gpu, **params)
            model.fit(state, show_progress=False)
        return {"device": "cuda" if use_gpu else "cpu"}

    return fit


_FITS = {
    "sksvd SVDRecommender": _sksvd("SVDRecommender"),
    "sksvd FunkSVD": _sksvd("FunkSVD"),
    "sksvd AsySVD": _sksvd("AsySVD", n_epochs=2),
    "scipy svds": _svds,
    "sklearn randomized_svd": _randomized_svd,
    "implicit ALS": _implicit("als"),
    "implicit BPR": _implicit("bpr"),
}
_SKSVD_CLASS = {"sksvd SVDRecommender": "SVDRecommender", "sksvd FunkSVD": "FunkSVD",
                "sksvd AsySVD": "AsySVD"}


def _available(method):
    """None when the method can run here, else why not."""
    try:
        if method in _SKSVD_CLASS:
            import sksvd

            getattr(sksvd, _SKSVD_CLASS[method])
        elif method.startswith("implicit"):
            import implicit  # noqa: F401
    except Exception as exc:  # a model still being written by another helper, a missing extra
        return f"not importable ({exc!r})"
    return None


def _mem_available_mb():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def growth_exponent(x, y):
    """Slope of the least-squares line through (log x, log y); None with < 2 points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return None
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def recommenders(sizes, device="cpu", timeout=600.0, repeat_smallest=3, repeat_below=10.0,
                 log=print, methods=None):
    """Fit every method at every size; returns (rows, notes)."""
    methods = list(methods or _FITS)
    rows, notes, last = [], [], {}
    skip = {m: why for m in methods if (why := _available(m))}
    for m, why in skip.items():
        notes.append(f"{m}: {why}")
    for i, label in enumerate(sizes):
        nnz = SIZES[label]
        users, items = _shape(nnz)
        need = 200 * nnz / 2**20  # rough peak of the hungriest peer (and the draw), MB
        if _mem_available_mb() < need:
            notes.append(f"{label}: skipped, {_mem_available_mb():.0f} MB available < "
                         f"{need:.0f} MB needed")
            log(f"  {label}: skipped (memory)")
            continue
        t0 = time.perf_counter()
        X = h.cached_powerlaw_csr(users, items, nnz, seed=0)
        log(f"  {label}: {users} x {items}, nnz {X.nnz} ready in {time.perf_counter() - t0:.1f}s")
        for m in methods:
            if m in skip:
                continue
            if m in last:
                prev_nnz, prev_s = last[m]
                if prev_s * nnz / prev_nnz > timeout:
                    notes.append(f"{m} at {label}: not run (about {prev_s * nnz / prev_nnz:.0f} s "
                                 f"expected from {prev_s:.1f} s at {prev_nnz:,} nnz, "
                                 f"limit {timeout:.0f} s)")
                    skip[m] = "time limit"
                    continue
            runs = []
            n_runs = repeat_smallest if i == 0 else 1
            for j in range(n_runs):
                if j and runs[0]["seconds"] > repeat_below:
                    break  # slow fits are timed once: their noise is relatively small
                try:
                    runs.append(h.measure(_fit_child, m, X, device, start_method="forkserver",
                                          timeout=timeout)["result"])
                except TimeoutError:
                    notes.append(f"{m} at {label}: over the {timeout:.0f} s limit")
                    skip[m] = "time limit"
                    break
                except RuntimeError as exc:
                    notes.append(f"{m} at {label}: failed ({exc})")
                    skip[m] = "failed"
                    break
            if not runs:
                continue
            best = min(runs, key=lambda r: r["seconds"])
            rows.append({"method": m, "size": label, "n_users": users, "n_items": items,
                         "nnz": int(X.nnz), "seconds": best["seconds"],
                         "peak_extra_mb": max(r["peak_extra_mb"] for r in runs),
                         "runs": len(runs), "solver": best.get("algorithm", ""),
                         "device": best.get("device", "cpu")})
            last[m] = (nnz, best["seconds"])
            log(f"    {m}: {best['seconds']:.2f}s, peak extra {best['peak_extra_mb']:.0f} MB")
        del X
    return rows, notes


# ---------------------------------------------------------------------------- compressor
def _image_matrix(side):
    """The scikit-learn sample image ``china.jpg`` resized to side x side, as (side, 3 side)."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    img = Image.fromarray(load_sample_image("china.jpg")).resize((side, side),
                                                                 Image.Resampling.BICUBIC)
    a = np.asarray(img, dtype=np.float32) / 255.0
    return np.ascontiguousarray(a.reshape(side, side * 3))


def _compress_child(method, M, device):
    if method == "sksvd TruncatedSVDCompressor":
        from sksvd import TruncatedSVDCompressor

        TruncatedSVDCompressor(n_components=4, random_state=0, device=device).fit(M[:64, :64])

        def run():
            TruncatedSVDCompressor(n_components=50, random_state=0, device=device).fit(M)
    elif method == "sklearn TruncatedSVD (randomized)":
        from sklearn.decomposition import TruncatedSVD

        def run():
            TruncatedSVD(n_components=50, random_state=0).fit(M)
    else:
        import scipy.linalg

        def run():
            scipy.linalg.svd(M, full_matrices=False)
    base = h.current_rss()
    h.reset_peak_rss()
    t0 = time.perf_counter()
    run()
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - t0,
            "peak_extra_mb": _mb(max(h.peak_rss() - base, 0))}


COMPRESSORS = ("sksvd TruncatedSVDCompressor", "sklearn TruncatedSVD (randomized)",
               "scipy.linalg.svd (full)")


def compressor(sides, device="cpu", timeout=600.0, full_max=2048, log=print):
    """Fit time of the rank-50 compressor against the image size; returns (rows, notes)."""
    rows, notes = [], []
    try:
        import sksvd

        sksvd.TruncatedSVDCompressor  # noqa: B018
        methods = COMPRESSORS
    except Exception as exc:
        notes.append(f"sksvd TruncatedSVDCompressor: not importable ({exc!r})")
        methods = COMPRESSORS[1:]
    for side in sides:
        M = _image_matrix(side)
        for m in methods:
            if "full" in m and side > full_max:
                continue
            try:
                res = h.measure(_compress_child, m, M, device, start_method="forkserver",
                                timeout=timeout)["result"]
            except (TimeoutError, RuntimeError) as exc:
                notes.append(f"{m} at {side}x{side}: {exc}")
                continue
            rows.append({"method": m, "image": f"{side}x{side}x3", "pixels": side * side,
                         "matrix": f"{M.shape[0]} x {M.shape[1]}", "rank": 50 if "full" not in m
                         else min(M.shape), "seconds": res["seconds"],
                         "peak_extra_mb": res["peak_extra_mb"]})
            log(f"    {m} {side}x{side}: {res['seconds']:.3f}s")
    return rows, notes


# ---------------------------------------------------------------------------- figures
def exponents(rows, x_key, group_key="method"):
    """{method: (time exponent, memory exponent)} from the rows."""
    out = {}
    for m in dict.fromkeys(r[group_key] for r in rows):
        rs = [r for r in rows if r[group_key] == m]
        out[m] = (growth_exponent([r[x_key] for r in rs], [r["seconds"] for r in rs]),
                  growth_exponent([r[x_key] for r in rs], [r["peak_extra_mb"] for r in rs]))
    return out


def plot(rows, x_key, xlabel, path, title):
    """Log-log figure of time (and peak memory) against ``x_key``, slopes in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exps = exponents(rows, x_key)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for m, (et, em) in exps.items():
        rs = sorted((r for r in rows if r["method"] == m), key=lambda r: r[x_key])
        x = [r[x_key] for r in rs]
        axes[0].loglog(x, [r["seconds"] for r in rs], "o-",
                       label=m + (f" (slope {et:.2f})" if et is not None else ""))
        axes[1].loglog(x, [max(r["peak_extra_mb"], 1e-1) for r in rs], "o-",
                       label=m + (f" (slope {em:.2f})" if em is not None else ""))
    axes[0].set_ylabel("fit time (s)")
    axes[1].set_ylabel("peak memory beyond the input (MB)")
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------- main
def main(quick=False, device="cpu", sizes=None, log=print):
    """Run both growth studies and write ``results/growth*.{json,md,png}``."""
    if sizes is None:
        sizes = ["1M"] if quick else ["1M", "5M", "20M", "50M"]
    timeout = 60.0 if quick else 900.0
    if quick:  # read by the BPR fit in the child processes
        os.environ["SKSVD_GROWTH_BPR_ITERATIONS"] = "20"
    log(f"[{NAME}] recommenders at {', '.join(sizes)}, device {device}")
    load = os.getloadavg()[0]
    rec_rows, notes = recommenders(sizes, device, timeout=timeout,
                                   repeat_smallest=3, log=log)
    sides = IMAGE_SIDES_QUICK if quick else IMAGE_SIDES
    log(f"[{NAME}] compressor at {', '.join(map(str, sides))}")
    comp_rows, comp_notes = compressor(sides, device, timeout=timeout,
                                       full_max=512 if quick else 2048, log=log)
    notes += comp_notes

    suffix = "" if str(device) == "cpu" else "_" + str(device).replace(":", "")
    h.RESULTS.mkdir(parents=True, exist_ok=True)
    figures = []
    if len({r["size"] for r in rec_rows}) >= 2:
        figures.append(plot(rec_rows, "nnz", "interactions (nnz)",
                            h.RESULTS / f"growth_recommenders{suffix}.png",
                            f"Recommenders: fit against interactions (rank {RANK}, {device})"))
    if len({r["pixels"] for r in comp_rows}) >= 2:
        figures.append(plot(comp_rows, "pixels", "pixels (side x side)",
                            h.RESULTS / f"growth_compressor{suffix}.png",
                            f"Compressor: fit against image size (rank 50, {device})"))
    exp_rows = [{"study": "recommenders", "method": m, "time_exponent": et,
                 "memory_exponent": em} for m, (et, em) in exponents(rec_rows, "nnz").items()]
    exp_rows += [{"study": "compressor", "method": m, "time_exponent": et,
                  "memory_exponent": em} for m, (et, em) in exponents(comp_rows, "pixels").items()]

    ratios = {}
    smallest = sizes[0]
    ours = {r["method"]: r["seconds"] for r in rec_rows if r["size"] == smallest}
    if "sksvd SVDRecommender" in ours:
        for peer in ("scipy svds", "sklearn randomized_svd", "implicit ALS", "implicit BPR"):
            if peer in ours:
                ratios[f"{smallest} fit time sksvd SVDRecommender / {peer}"] = {
                    "value": ours["sksvd SVDRecommender"] / ours[peer], "better": "lower",
                    "ours": ours["sksvd SVDRecommender"], "peer": ours[peer]}
    notes.append(f"Load average (1 min) at start {load:.1f}, at the end "
                 f"{os.getloadavg()[0]:.1f}, on {os.cpu_count()} cores.")
    notes_text = PROTOCOL + (
        "\n\nCompressor: `china.jpg` (scikit-learn sample) resized to side x side (bicubic), "
        "as a (side, 3 side) float32 matrix in [0, 1]; sksvd `TruncatedSVDCompressor("
        "n_components=50)` and scikit-learn `TruncatedSVD(50)` (randomized) beside the full "
        "LAPACK SVD (`scipy.linalg.svd`, all singular values)."
        + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")
        + ("\n\nFigures: " + ", ".join(f"`{os.path.basename(str(f))}`" for f in figures)
           if figures else ""))
    h.write_results(NAME, rec_rows, device=device, notes=notes_text,
                    tables={"Compressor against image size": comp_rows,
                            "Growth exponents (log-log slopes)": exp_rows},
                    extra={"compressor": comp_rows, "exponents": exp_rows, "ratios": ratios,
                           "figures": [os.path.basename(str(f)) for f in figures],
                           "protocol": PROTOCOL, "quick": quick, "notes_list": notes})
    return rec_rows, comp_rows


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1M interactions only, small images")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--sizes", default=None, help="comma-separated, among " + ", ".join(SIZES))
    return p.parse_args(argv)


if __name__ == "__main__":
    args = _parse()
    main(quick=args.quick, device=args.device,
         sizes=args.sizes.split(",") if args.sizes else None)
