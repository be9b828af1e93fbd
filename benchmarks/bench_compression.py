"""Compression: truncated SVD at rank 100, sksvd beside scikit-learn, scipy and torch.

Run ``python -m benchmarks.bench_compression [--quick] [--device cpu|cuda] [--repeat 3]``.

Three matrices: the 427 x 1920 ``china.jpg`` matrix, a 4096 x 12288
image (``china.jpg`` upscaled bicubically by Pillow to 4096 x 4096 x 3), and a
200,000 x 50,000 power-law CSR with 20M nonzeros
(``harness.cached_powerlaw_csr(200_000, 50_000, 20_000_000, seed=0)``), all
float32. At k = 100 each solver's time, peak memory and rank-k error ratio
(``||X - X_k||_F`` over the exact optimum ``sqrt(sum_{i>k} s_i^2)``, or over
the best solver's error for the sparse matrix, where the exact spectrum is out
of reach) are recorded. ``--quick`` uses small stand-ins (china, 1024 x 3072,
20,000 x 5,000 with 500k nonzeros) and writes ``compression_quick``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import scipy.sparse as sp

from . import _harness as h

NAME = "compression"
K = 100
OVERSAMPLES = 10

PROTOCOL = f"""\
**Protocol.** Rank k = {K}, float32 input for every solver. Solvers:
`sksvd` = `TruncatedSVDCompressor({K}, random_state=0).fit_transform(X)` (defaults:
`algorithm="auto"`, `n_iter="auto"`, {OVERSAMPLES} oversamples, float32 torch);
`sksvd kernel` = `sksvd.linalg.randomized_svd` on the numpy/scipy matrix (on a
torch tensor made before the clock starts when the device is a GPU; the
estimator's glue excluded); `sklearn randomized` =
`TruncatedSVD({K}, algorithm="randomized", random_state=0).fit_transform(X)` (its
defaults: n_iter=5, 10 oversamples, LU normalisation); `sklearn arpack` =
`TruncatedSVD({K}, algorithm="arpack")`; `scipy svds` = `svds(X, k={K},
random_state=0)` (ARPACK, tol=0); `torch.svd_lowrank` = `torch.svd_lowrank(A,
q={K + OVERSAMPLES})` (its default niter=2) on a tensor made before the clock starts.
Each fit runs in a fresh child process (forkserver) after a small warm-up fit of
the same solver (on a random 140 x 600 matrix: wide enough that each solver
takes the same algorithm as on the matrices measured); **seconds** is the fit alone (best of `--repeat` runs; one run
for the ARPACK solvers on the sparse matrix); **peak MB** is the child's peak
resident size beyond its size before the fit (inputs excluded). **error ratio**
= `||X - L R||_F / e*`, computed exactly in float64 from the returned factors
(`||X||^2 - 2 sum(L * X R^T) + sum((L^T L) * (R R^T))`), with `e*` the exact
optimum `sqrt(sum_{{i>k}} s_i^2)` from the float64 eigenvalues of `X X^T` (dense),
or the smallest error any solver reached (sparse). **flop rate**: for the
power-iteration solvers (sklearn, torch), `2 m n l (2q + 2) + (q + 1)(2 s l^2 -
2 l^3 / 3) + 4 L l^2` flops (2q+2 passes over X with l = k + {OVERSAMPLES}
columns, q power iterations, q+1 QR/LU of the short side s, the final small SVD of
the long side L); for sksvd's block Krylov solver (q = its Krylov steps, blocks of
b = 40 columns, 56 when the passes are dense GEMMs) `krylov_flops`: 2q+2 passes of b columns, a pass of k columns
for the long-side factor of sparse input, the QRs and Gram-Schmidt sweeps, the
Rayleigh-Ritz matrix and the final products; over the
seconds (`nnz` in place of `m n` for the sparse matrix, whose products are
memory-bound: no GEMM share is given there), as a share of this machine's float32 GEMM rate (`harness.matmul_gflops()`,
4096^3, measured in this run). The machine is shared with other work (2 cores):
timings are noisy. With the libraries' default threads (2) and other processes
running, multi-threaded LAPACK/BLAS calls can stall on thread barriers (measured:
torch QR of 4096 x 110 at load 7, median 2.3 s with 2 threads vs 13 ms with 1);
`--threads 1` (results `compression_1thread`) is the reproducible comparison."""

SOLVERS = ("sksvd", "sksvd kernel", "sklearn randomized", "sklearn arpack", "scipy svds",
           "torch.svd_lowrank")
RANDOMIZED_Q = {"sklearn randomized": 5, "torch.svd_lowrank": 2}


# ------------------------------------------------------------------------------ data
def china_matrix():
    from sklearn.datasets import load_sample_image

    img = load_sample_image("china.jpg")
    return np.ascontiguousarray(img.reshape(img.shape[0], -1), dtype=np.float32)


def upscaled_matrix(side):
    """``china.jpg`` resized (bicubic) to ``side x side x 3``, as a (side, 3 side) matrix."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    img = Image.fromarray(load_sample_image("china.jpg")).resize((side, side),
                                                                 Image.Resampling.BICUBIC)
    arr = np.asarray(img)
    return np.ascontiguousarray(arr.reshape(side, -1), dtype=np.float32)


def sparse_matrix(quick):
    if quick:
        return h.powerlaw_csr(20_000, 5_000, 500_000, seed=0)
    return h.cached_powerlaw_csr(200_000, 50_000, 20_000_000, seed=0)


# ------------------------------------------------------------------- fits (children)
def _prepare(solver, X, device):
    """What a solver needs before the clock starts (tensors for the torch-level rows)."""
    if solver == "sksvd kernel" and not str(device).startswith("cuda"):
        return X, None  # the CPU kernel takes numpy/scipy as they are
    if solver in ("sksvd kernel", "torch.svd_lowrank"):
        import torch

        from sksvd._backend import to_torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            A = to_torch(X, device=device, dtype=torch.float32)
            At = to_torch(X.T.tocsr(), device=device, dtype=torch.float32) \
                if sp.issparse(X) else None
        return A, At
    return None, None


def _fit(solver, X, device, A=None, At=None):
    """Fit one solver; return (L, R, q) with ``X ~= L @ R`` and q its power iterations."""
    if solver == "sksvd":
        from sksvd.compression import TruncatedSVDCompressor

        est = TruncatedSVDCompressor(K, random_state=0, device=device)
        L = est.fit_transform(X)
        return L, est.components_, est.n_iter_
    if solver == "sksvd kernel":
        import torch

        from sksvd.linalg import randomized_svd

        U, S, Vt, info = randomized_svd(A, K, n_oversamples=OVERSAMPLES, At=At,
                                        generator=torch.Generator().manual_seed(0),
                                        return_info=True)
        return U * S, Vt, info["n_iter"]
    if solver in ("sklearn randomized", "sklearn arpack"):
        from sklearn.decomposition import TruncatedSVD

        est = TruncatedSVD(K, algorithm=solver.split()[1], random_state=0)
        L = est.fit_transform(X)
        return L, est.components_, RANDOMIZED_Q.get(solver)
    if solver == "scipy svds":
        from scipy.sparse.linalg import svds

        u, s, vt = svds(X, k=K, random_state=0)
        return u * s, vt, None
    if solver == "torch.svd_lowrank":
        import torch

        U, S, V = torch.svd_lowrank(A, q=K + OVERSAMPLES)  # rank q: keep the top K
        return U[:, :K] * S[:K], V[:, :K].T, RANDOMIZED_Q[solver]
    raise ValueError(f"solver={solver!r}")


def _to_host(t):
    try:
        import torch

        if isinstance(t, torch.Tensor):
            return t.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(t)


def _limit_threads(threads):
    """In a child: at most ``threads`` threads for torch, BLAS and OpenMP (None: defaults)."""
    if threads:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        threadpool_limits(threads)


def run_solver(solver, X, device, repeat, threads=None):
    """Child process: warm up, then fit ``repeat`` times; best time, peak memory, factors."""
    import torch

    _limit_threads(threads)

    cuda = str(device).startswith("cuda")
    rng = np.random.default_rng(1)
    # Wide enough (600 > 500 columns) that every solver's own choice of algorithm
    # is the one it makes on the matrices measured (sksvd's "auto" takes the exact
    # SVD below 500): the warm-up then runs the same code, so the peak measured
    # is the fit's memory, not the first use of library code pages.
    small = rng.random((K + 40, 600)).astype(np.float32)
    if sp.issparse(X):
        small = sp.csr_matrix(small)
    _fit(solver, small, device, *_prepare(solver, small, device))  # load libraries, warm up
    A, At = _prepare(solver, X, device)
    best, peak_extra, gpu_peak = float("inf"), 0.0, None
    out = None
    for _ in range(repeat):
        out = None
        base = h.current_rss()
        h.reset_peak_rss()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            gpu_base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        out = _fit(solver, X, device, A, At)
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
        peak_extra = max(peak_extra, (max(h.peak_rss(), h.current_rss()) - base) / 2**20)
        if cuda:
            gpu_peak = (torch.cuda.max_memory_allocated() - gpu_base) / 2**20
    L, R, q = out
    return {"seconds": best, "peak_extra_mb": peak_extra, "gpu_peak_mb": gpu_peak,
            "L": _to_host(L).astype(np.float32), "R": _to_host(R).astype(np.float32), "q": q}


def matmul_rate(device, threads=None):
    _limit_threads(threads)
    return h.matmul_gflops(device=device)


# ---------------------------------------------------------------------- accounting
def squared_norm(X):
    data = X.data if sp.issparse(X) else X
    return float(np.einsum("i,i->", data.ravel().astype(np.float64),
                           data.ravel().astype(np.float64)))


def optimum_error(X, k, total):
    """Exact ``sqrt(sum_{i>k} s_i^2)`` from the float64 eigenvalues of the short Gram matrix."""
    X64 = X.astype(np.float64)
    G = X64 @ X64.T if X.shape[0] <= X.shape[1] else X64.T @ X64
    del X64
    ev = np.linalg.eigvalsh(G)[::-1]
    tail = float(np.sum(np.clip(ev[k:], 0, None)))
    head = float(np.sum(ev[:k]))
    # Two routes to the same number; the tail sum keeps its own precision.
    return np.sqrt(tail), np.sqrt(max(total - head, 0.0))


def factor_error(X, L, R, total):
    """``||X - L R||_F`` exactly (float64), without forming ``L R``."""
    L = L.astype(np.float64)
    R = R.astype(np.float64)
    XRt = X @ R.T if sp.issparse(X) else X.astype(np.float64) @ R.T
    cross = float(np.sum(L * np.asarray(XRt)))
    fit = float(np.sum((L.T @ L) * (R @ R.T)))
    return np.sqrt(max(total - 2 * cross + fit, 0.0))


def krylov_flops(m, n, q, k=K, want=K + OVERSAMPLES, nnz=None):
    """Flops of sksvd's block Krylov SVD with q steps (``nnz`` replaces m n when sparse).

    ``2q + 2`` passes of ``b`` columns (``b`` = the default block size), one
    more of ``k`` columns for the long-side factor of sparse input, two
    QRs (counted as Householder's) and two Gram-Schmidt sweeps per block on the short side
    ``s``, the Rayleigh-Ritz matrix, and the two final ``(q+1) b x k`` products.
    When the kernel takes its Gram path (dense, short side ``s <= 12 b``), the
    passes are instead the Gram matrix (``s^2 L`` flops: a symmetric rank-L
    update), ``q + 1`` products of it with ``b`` columns and the long-side
    factor's pass of ``k`` columns.
    """
    from sksvd.linalg import _krylov_plan

    s, long_ = min(m, n), max(m, n)
    work = m * n if nnz is None else nnz
    b, gram = _krylov_plan(s, min(want, s), nnz is None)  # the kernel's own choice
    r = (q + 1) * b
    passes = 2.0 * work * b * (2 * q + 2) + (2.0 * work * k if nnz is not None else 0.0)
    if gram:
        passes = 1.0 * s * s * long_ + (q + 1) * 2.0 * s * s * b + 2.0 * work * k
    qr = sum(2 * (2.0 * s * b**2 - 2.0 * b**3 / 3) + 2 * 4.0 * s * (i * b) * b
             for i in range(q + 1))
    rayleigh = sum(2.0 * (s if gram else long_) * b**2 + 2.0 * s * b * (i * b)
                   for i in range(q + 1))
    final = 2.0 * s * r * k + (2.0 * long_ * r * k if nnz is None and not gram else 0.0)
    return passes + qr + rayleigh + final


def randomized_flops(m, n, q, ell=K + OVERSAMPLES, nnz=None):
    """Flops of a randomized SVD with q power iterations (``nnz`` replaces m n when sparse)."""
    s, long_ = min(m, n), max(m, n)
    work = m * n if nnz is None else nnz
    return (2.0 * work * ell * (2 * q + 2) + (q + 1) * (2.0 * s * ell**2 - 2.0 * ell**3 / 3)
            + 4.0 * long_ * ell**2)


# -------------------------------------------------------- per-component accuracy
ACCURACY_PROTOCOL = """\
**Protocol (accuracy).** The 427 x 1920 `china.jpg` matrix (`image_to_matrix`), float64.
Exact values from numpy's SVD: `singular_values_` = s_1..s_k and `explained_variance_ratio_`
as scikit-learn computes it (`var(U_k S_k, axis=0) / var(X, axis=0).sum()`). Columns
`sv_max_rel_err` and `evr_max_rel_err`: the largest relative error over the k components.
`sksvd` = `TruncatedSVDCompressor(k, algorithm="randomized", dtype="float64", random_state=0)`
(defaults: `tol=2e-2`, the per-value stopping rule); `sksvd, Frobenius rule only` = the same
with `tol=1e9` (the per-value rule never binds: the cost of the rule is the difference);
`sklearn randomized` = `TruncatedSVD(k, random_state=0)` (its defaults: n_iter=5, 10
oversamples). `seconds`: best of `--repeat` fits in this process after one warm-up fit;
`q`: Krylov steps (sksvd) or power iterations (sklearn)."""


def _accuracy_child(repeat, threads):
    _limit_threads(threads)
    return accuracy_rows(repeat)


def accuracy_rows(repeat, ks=(20, 100)):
    from sklearn.datasets import load_sample_image
    from sklearn.decomposition import TruncatedSVD

    from sksvd.compression import TruncatedSVDCompressor
    from sksvd.image import image_to_matrix

    X = image_to_matrix(load_sample_image("china.jpg"))
    U, S, _ = np.linalg.svd(X, full_matrices=False)
    full_var = X.var(axis=0).sum()
    fits = {
        "sksvd": lambda k: TruncatedSVDCompressor(k, algorithm="randomized", dtype="float64",
                                                  random_state=0),
        "sksvd, Frobenius rule only": lambda k: TruncatedSVDCompressor(
            k, algorithm="randomized", dtype="float64", tol=1e9, random_state=0),
        "sklearn randomized": lambda k: TruncatedSVD(k, random_state=0),
    }
    rows = []
    for k in ks:
        sv = S[:k]
        evr = (U[:, :k] * S[:k]).var(axis=0) / full_var
        base = None
        for name, make in fits.items():
            make(k).fit(X)  # warm-up
            best, est = float("inf"), None
            for _ in range(repeat):
                est = make(k)
                t0 = time.perf_counter()
                est.fit(X)
                best = min(best, time.perf_counter() - t0)
            row = {"matrix": "china.jpg 427x1920 float64", "k": k, "solver": name,
                   "seconds": best,
                   "sv_max_rel_err": float(np.max(np.abs(est.singular_values_ / sv - 1))),
                   "evr_max_rel_err": float(np.max(np.abs(est.explained_variance_ratio_ / evr
                                                          - 1))),
                   "q": getattr(est, "n_iter_", 5)}
            if name == "sklearn randomized":
                base = row
            rows.append(row)
            print(row, flush=True)
        for r in rows[-3:]:
            r["speedup_vs_sklearn_randomized"] = base["seconds"] / r["seconds"]
            r["accuracy_target_met"] = bool(r["sv_max_rel_err"] <= base["sv_max_rel_err"] and
                                            r["evr_max_rel_err"] <= base["evr_max_rel_err"])
    return rows


# ---------------------------------------------------------------- quantized factors
QUANTIZED_PROTOCOL = """\
**Protocol (quantized factors).** `compress_image(img, k, algorithm="full",
factor_dtype=...)` on scikit-learn's sample images, rank k = 50, 100, 200. `psnr_*`: PSNR of
`reconstruct()` (the image rebuilt from the stored factors, rounded to uint8) against the
original; `*_nbytes`: `CompressedImage.nbytes` (uint8: one byte per number plus a float32
scale and offset per component and factor); `file_nbytes`: size on disk of `save()` of the
uint8 image (its `.npz` container adds a fixed overhead); `jpeg_psnr_same_bytes`: the best
Pillow JPEG (quality 1..100, optimize) no larger than the uint8 factors. Target: uint8 within
0.5 dB of float32 at <= 1/3.5 of its bytes. Second table: `compress_image(img, psnr=30)`, the
smallest rank whose reconstruction from the stored factors reaches 30 dB (before rounding),
with float32 and uint8 factors. Figures `compression_rank_profile_{china,flower}.png`:
`plot_rank_profile(rank_profile(img, ranks, ssim=False))` over ranks 1..427."""


def quantized_rows(ranks=(50, 100, 200)):
    import tempfile
    from pathlib import Path

    from sklearn.datasets import load_sample_image

    from sksvd.image import compress_image, psnr, rank_profile
    from sksvd.plotting import plot_rank_profile

    rows, targets = [], []
    for name in ("china.jpg", "flower.jpg"):
        img = load_sample_image(name)
        grid = sorted({1, 5, 10, 20, 30, 50, 75, 100, 130, 160, 200, 250, 300, 350, 427}
                      | set(ranks))
        profile = rank_profile(img, grid, ssim=False, jpeg=True, device="cpu")
        fig = plot_rank_profile(profile, title=f"{name}: SVD compression against rank")
        fig.savefig(h.RESULTS / f"compression_rank_profile_{name.split('.')[0]}.png", dpi=100)
        for k in ranks:
            f32 = compress_image(img, k, algorithm="full", factor_dtype="float32", device="cpu")
            u8 = compress_image(img, k, algorithm="full", factor_dtype="uint8", device="cpu")
            with tempfile.TemporaryDirectory() as tmp:
                file_nbytes = u8.save(Path(tmp) / "u8.npz")
            p32, p8 = psnr(img, f32.reconstruct()), psnr(img, u8.reconstruct())
            jpeg = profile.loc[profile["rank"] == k].iloc[0]
            row = {"image": name, "rank": k, "psnr_float32": p32, "psnr_uint8": p8,
                   "psnr_loss_db": p32 - p8, "float32_nbytes": f32.nbytes,
                   "uint8_nbytes": u8.nbytes, "bytes_ratio": f32.nbytes / u8.nbytes,
                   "file_nbytes": file_nbytes, "raw_nbytes": int(img.nbytes),
                   "compression_ratio_uint8": u8.compression_ratio,
                   "jpeg_psnr_same_bytes": float(jpeg["jpeg_psnr"]),
                   "target_met": bool(p32 - p8 <= 0.5 and u8.nbytes * 3.5 <= f32.nbytes)}
            rows.append(row)
            print(row, flush=True)
        for ftype in ("float32", "uint8"):
            ci = compress_image(img, psnr=30.0, factor_dtype=ftype, device="cpu")
            targets.append({"image": name, "factor_dtype": ftype, "rank": ci.n_components,
                            "expected_psnr": ci.expected_psnr,
                            "psnr_rounded": psnr(img, ci.reconstruct()),
                            "nbytes": ci.nbytes, "compression_ratio": ci.compression_ratio})
    return rows, targets


# ------------------------------------------------------------------------------ main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small stand-ins, seconds not minutes")
    ap.add_argument("--device", default="cpu", help="device for sksvd and torch rows")
    ap.add_argument("--repeat", type=int, default=None,
                    help="runs per solver, best time kept (default 3; 1 with --quick)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per solver child")
    ap.add_argument("--solvers", default=",".join(SOLVERS), help="comma-separated subset")
    ap.add_argument("--cases", default="china,upscaled,sparse", help="comma-separated subset")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for every solver and the GEMM rate (default: libraries' own)")
    ap.add_argument("--out", default=None,
                    help="results name (default: compression[_quick][_Nthread])")
    ap.add_argument("--accuracy", action="store_true",
                    help="only the per-component accuracy table (compression_accuracy)")
    ap.add_argument("--quantized", action="store_true",
                    help="only the quantized-factor table (compression_quantized)")
    args = ap.parse_args(argv)
    if args.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    if args.accuracy:  # in a fresh child, as the speed rows (thread limits set before imports)
        rows = h.measure(_accuracy_child, args.repeat or 5, args.threads,
                         start_method="forkserver", timeout=args.timeout)["result"]
        print(h.write_results(NAME + "_accuracy", rows, notes=ACCURACY_PROTOCOL
                              + (f"\nThreads: {args.threads}." if args.threads else "")))
        return
    if args.quantized:
        rows, targets = quantized_rows()
        print(h.write_results(NAME + "_quantized", rows, notes=QUANTIZED_PROTOCOL,
                              tables={"PSNR target 30 dB": targets}))
        return
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    side = 1024 if args.quick else 4096
    cases = {"china": ("china.jpg 427x1920", china_matrix),
             "upscaled": (f"upscaled {side}x{3 * side}", lambda: upscaled_matrix(side)),
             "sparse": ("sparse 20,000x5,000 (500k nnz)" if args.quick else
                        "sparse 200,000x50,000 (20M nnz)", lambda: sparse_matrix(args.quick))}
    cases = [cases[c.strip()] for c in args.cases.split(",") if c.strip()]

    if args.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    gflops = h.measure(matmul_rate, args.device, args.threads,
                       start_method="forkserver")["result"]
    print(f"float32 matmul rate: {gflops:.1f} GFLOP/s", flush=True)
    rows = []
    for label, make in cases:
        X = make()
        m, n = X.shape
        total = squared_norm(X)
        sparse = sp.issparse(X)
        e_opt = None
        if not sparse:
            t0 = time.perf_counter()
            e_opt, e_opt2 = optimum_error(X, K, total)
            print(f"{label}: exact optimum {e_opt:.6g} (check {e_opt2:.6g}), "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        case_rows = []
        for solver in solvers:
            repeat = 1 if (sparse and not args.quick and solver in ("sklearn arpack",
                                                                    "scipy svds")) \
                else args.repeat
            row = {"matrix": label, "solver": solver}
            try:
                res = h.measure(run_solver, solver, X, args.device, repeat, args.threads,
                                start_method="forkserver", timeout=args.timeout)["result"]
            except (RuntimeError, TimeoutError) as exc:
                row.update(seconds=float("nan"), note=str(exc)[:120])
                print(f"{label} | {solver}: {exc}", flush=True)
                case_rows.append(row)
                continue
            err = factor_error(X, res["L"], res["R"], total)
            row.update(seconds=res["seconds"], peak_mb=res["peak_extra_mb"], error=err,
                       q=res["q"])
            if res["gpu_peak_mb"] is not None:
                row["gpu_peak_mb"] = res["gpu_peak_mb"]
            if res["q"] is not None:
                nnz = X.nnz if sparse else None
                count = krylov_flops if solver.startswith("sksvd") else randomized_flops
                rate = count(m, n, res["q"], nnz=nnz) / res["seconds"] / 1e9
                row["gflops"] = rate
                if not sparse:  # sparse products are memory-bound: no GEMM share
                    row["share_of_matmul_peak"] = rate / gflops
            case_rows.append(row)
            print(f"{label} | {solver}: {res['seconds']:.3f} s, {res['peak_extra_mb']:.0f} MB, "
                  f"error {err:.6g}, q={res['q']}", flush=True)
        errors = [r["error"] for r in case_rows if "error" in r]
        ref = e_opt if e_opt is not None else min(errors)
        base = next((r for r in case_rows if r["solver"] == "sklearn randomized"
                     and "error" in r), None)
        for r in case_rows:
            if "error" in r:
                r["error_ratio"] = r["error"] / ref
                r["reference"] = "exact" if e_opt is not None else "best solver"
            if base is not None and "error" in r:
                r["speedup_vs_sklearn_randomized"] = base["seconds"] / r["seconds"]
                r["peak_vs_sklearn_randomized"] = r["peak_mb"] / max(base["peak_mb"], 1e-9)
        rows += case_rows
        del X

    targets = []
    for label, _ in cases:
        ours = next((r for r in rows if r["matrix"] == label and r["solver"] == "sksvd"
                     and "error" in r), None)
        if ours is None or "speedup_vs_sklearn_randomized" not in ours:
            continue
        ok = (ours["error_ratio"] <= 1.01 and ours["speedup_vs_sklearn_randomized"] >= 2
              and ours["peak_vs_sklearn_randomized"] <= 1.0)
        if label.startswith("upscaled"):  # and half the GEMM rate on the large image
            ok = ok and ours.get("share_of_matmul_peak", 0.0) >= 0.5
        targets.append({"matrix": label, "error_ratio": ours["error_ratio"],
                        "speedup": ours["speedup_vs_sklearn_randomized"],
                        "peak_ratio": ours["peak_vs_sklearn_randomized"],
                        "share_of_matmul_peak": ours.get("share_of_matmul_peak"),
                        "target_met": ok})
    columns = ["matrix", "solver", "seconds", "peak_mb", "error_ratio", "reference", "q",
               "gflops", "share_of_matmul_peak", "speedup_vs_sklearn_randomized",
               "peak_vs_sklearn_randomized", "note"]
    if str(args.device).startswith("cuda"):
        columns.insert(4, "gpu_peak_mb")
    notes = (PROTOCOL + f"\n\nfloat32 matmul rate of this machine: {gflops:.1f} GFLOP/s."
             + "\nTarget: sksvd at error ratio <= 1.01, >= 2x faster than sklearn "
             "randomized with no more peak memory on every matrix; >= 50% of the matmul "
             "rate on the 4096 x 12288 image.")
    name = args.out or NAME + ("_quick" if args.quick else "") + (f"_{args.threads}thread"
                                                                   if args.threads else "")
    if args.threads:
        notes += f"\nEvery solver and the GEMM rate limited to {args.threads} thread(s)."
    text = h.write_results(name, rows, device=args.device,
                           notes=notes, columns=columns, tables={"Targets": targets},
                           extra={"matmul_gflops": gflops, "k": K})
    print(text)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning")
    main()
