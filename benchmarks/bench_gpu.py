"""GPU speed of sksvd beside plain torch doing the same work, in the same process.

Run ``python -m benchmarks.bench_gpu --device cuda [--quick]``. ``--device cpu``
runs the same code on the small sizes of ``--quick`` (``--full`` for the full
ones: tens of minutes on a small CPU). Writes ``results/gpu_cuda.{json,md}``
(``results/gpu.{json,md}`` on the CPU).

Rows, each sksvd call beside plain torch (the reference code is written here,
the obvious way: one upload, then device work):

1. rank-100 SVD of a 4096 x 12288 float32 matrix with a known spectrum:
   :class:`sksvd.TruncatedSVDCompressor` fed numpy vs an upload plus
   ``torch.svd_lowrank(q=110, niter=4)``; :func:`sksvd.linalg.randomized_svd`
   on the device tensor vs ``torch.svd_lowrank`` on it. Error ratio: the
   Frobenius error of the rank-100 projection over the optimal one.
2. :class:`sksvd.SVDRecommender` fit (k=100) on a 200,000 x 50,000 power-law
   CSR with 16.9M ratings vs a plain randomized SVD on the device (Gaussian
   drawn there, 2 power iterations, QR), with each one's captured energy
   ``||X V_k||_F^2``.
3. top-10 for every user, seen items masked: ``recommend`` vs a batched GEMM,
   a scatter of ``-inf`` and ``torch.topk`` (share of equal top-10 lists).
4. one FunkSVD epoch (128 factors, default parameters otherwise) vs a plain
   minibatch-SGD epoch (batch 262,144) of the same model.
5. one AsySVD epoch (128 factors, default parameters) on a 70,000 x 10,700
   power-law matrix with 6.2M interactions (no plain reference).

An estimator's epoch is ``(fit(n_epochs=3) - fit(n_epochs=1)) / 2`` (set-up
excluded; the set-up is reported too). Times are the best of the repeats after
a warm-up run. For every sksvd row one more run under ``torch.profiler``
counts kernel launches, host waits (``cudaStreamSynchronize``,
``cudaDeviceSynchronize``, ``cudaEventSynchronize``, synchronous ``cudaMemcpy``)
and host-to-device / device-to-host copies.
"""

from __future__ import annotations

import argparse
import time
import traceback

import numpy as np
import scipy.sparse as sp

from . import _harness as h

NAME = "gpu"

FULL = dict(dense=(4096, 12288), rank=100, oversample=10, rec=(200_000, 50_000, 16_900_000),
            k=100, top=10, funk_factors=128, plain_batch=262_144,
            asy=(70_000, 10_700, 6_200_000), asy_factors=128, repeat=3)
QUICK = dict(dense=(512, 1536), rank=20, oversample=10, rec=(8_000, 5_000, 150_000),
             k=20, top=10, funk_factors=32, plain_batch=16_384,
             asy=(2_000, 900, 40_000), asy_factors=32, repeat=2)


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def best_of(fn, dev, repeat, warmup=1):
    """``(result, best seconds, all seconds)`` of ``fn()`` after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    _sync(dev)
    runs, out = [], None
    for _ in range(repeat):
        _sync(dev)
        t0 = time.perf_counter()
        out = fn()
        _sync(dev)
        runs.append(time.perf_counter() - t0)
    return out, min(runs), runs


_SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize",
               "cudaMemcpy", "cudaMemcpy2D")
_LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
                 "cudaLaunchCooperativeKernel")


def profile_counts(fn, dev):
    """One run of ``fn`` under torch.profiler: launches, host waits and copies (CUDA only)."""
    if dev.type != "cuda":
        return {}
    from torch.profiler import ProfilerActivity, profile

    _sync(dev)
    try:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn()
            _sync(dev)
    except Exception as exc:  # noqa: BLE001 - the counts are extra; the timings stand
        return {"profile_error": repr(exc)[:200]}
    c = {"launches": 0, "syncs": 0, "memcpy_async": 0, "h2d": 0, "d2h": 0, "h2d_pageable": 0}
    for e in prof.key_averages():
        name, n = e.key, e.count
        if name in _LAUNCH_CALLS:
            c["launches"] += n
        elif name in _SYNC_CALLS:
            c["syncs"] += n
        elif name == "cudaMemcpyAsync":
            c["memcpy_async"] += n
        elif name.startswith("Memcpy HtoD"):
            c["h2d"] += n
            c["h2d_pageable"] += n if "Pageable" in name else 0
        elif name.startswith("Memcpy DtoH"):
            c["d2h"] += n
    # The explicit synchronize after fn() is the benchmark's, not fn's.
    c["syncs"] = max(0, c["syncs"] - 1)
    return c


# ------------------------------------------------------------------------------ data
def powerlaw_csr_torch(n_users, n_items, nnz, dev, seed=0, ratings=True):
    """:func:`benchmarks._harness.powerlaw_csr`'s recipe, drawn with torch on ``dev``.

    Zipf-like user and item weights ``rank**-1`` (randomly permuted); ``1.5 nnz``
    pairs drawn from the product distribution, deduplicated, topped up with
    uniform pairs if needed, a random ``nnz`` of them kept; ratings 1..5.
    Same distribution as the harness's generator (not the same draws): seconds
    on a GPU instead of minutes on a small CPU.
    """
    import torch

    g = torch.Generator(device=dev).manual_seed(seed)

    def cdf(n):
        w = torch.arange(1, n + 1, dtype=torch.float64, device=dev) ** -1.0
        w = w[torch.randperm(n, generator=g, device=dev)]
        return torch.cumsum(w / w.sum(), 0)

    def draw(size, cu=None, ci=None):
        if cu is None:
            u = torch.randint(0, n_users, (size,), generator=g, device=dev)
            i = torch.randint(0, n_items, (size,), generator=g, device=dev)
        else:
            rand = torch.rand(size, generator=g, device=dev, dtype=torch.float64)
            u = torch.searchsorted(cu, rand).clamp_(max=n_users - 1)
            rand = torch.rand(size, generator=g, device=dev, dtype=torch.float64)
            i = torch.searchsorted(ci, rand).clamp_(max=n_items - 1)
        return u.to(torch.int64) * n_items + i.to(torch.int64)

    keys = torch.unique(draw(int(1.5 * nnz), cdf(n_users), cdf(n_items)))
    while keys.numel() < nnz:
        keys = torch.unique(torch.cat([keys, draw(int(1.2 * (nnz - keys.numel())) + 1000)]))
    keys = keys[torch.randperm(keys.numel(), generator=g, device=dev)[:nnz]].sort().values
    rows, cols = keys // n_items, keys % n_items
    if ratings:
        data = torch.randint(1, 6, (nnz,), generator=g, device=dev).to(torch.float32)
    else:
        data = torch.ones(nnz, dtype=torch.float32, device=dev)
    indptr = torch.zeros(n_users + 1, dtype=torch.int64, device=dev)
    indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=n_users), 0)
    return sp.csr_matrix((data.cpu().numpy(), cols.to(torch.int32).cpu().numpy(),
                          indptr.to(torch.int32).cpu().numpy()), shape=(n_users, n_items))


def known_spectrum_matrix(m, n, dev, seed=0):
    """``A = U diag(s) V^T`` (float32) with random orthonormal ``U``, ``V`` and ``s_i = (1+i)^-1/2``.

    A slowly decaying spectrum (rank-100 of 4096 keeps ~60% of the energy):
    the regime where the number of power iterations matters.
    """
    import torch

    g = torch.Generator(device=dev).manual_seed(seed)
    r = min(m, n)
    U = torch.linalg.qr(torch.randn(m, r, generator=g, device=dev))[0]
    V = torch.linalg.qr(torch.randn(n, r, generator=g, device=dev))[0]
    s = (1.0 + torch.arange(r, dtype=torch.float64, device=dev)) ** -0.5
    A = (U * s.to(torch.float32)) @ V.T
    return A, s


def projection_error(A, V):
    """``||A - A V V^T||_F`` in float64 for orthonormal columns ``V`` (n, k)."""
    import torch

    A64, V64 = A.double(), V.double()
    return float(torch.linalg.norm(A64 - (A64 @ V64) @ V64.T))


# ---------------------------------------------------------------------------- parts
def part_svd(sz, dev, log):
    import torch

    from sksvd import TruncatedSVDCompressor
    from sksvd.linalg import randomized_svd

    m, n = sz["dense"]
    k, q, R = sz["rank"], sz["rank"] + sz["oversample"], sz["repeat"]
    A, s = known_spectrum_matrix(m, n, dev)
    A_np = A.cpu().numpy()
    opt = float(torch.sqrt((s[k:] ** 2).sum()))
    rows = []

    def comp():
        return TruncatedSVDCompressor(k, device=str(dev), random_state=0).fit(A_np)

    est, t, runs = best_of(comp, dev, R)
    err = projection_error(A, torch.from_numpy(est.components_.T.copy()).to(dev))
    rows.append(dict(part=f"1 rank-{k} SVD {m}x{n} float32",
                     impl="sksvd TruncatedSVDCompressor.fit(numpy)", seconds=t, runs=runs,
                     err_ratio=err / opt, **profile_counts(comp, dev)))

    def plain_np():
        At = torch.from_numpy(A_np).to(dev)
        return torch.svd_lowrank(At, q=q, niter=4)

    (_, _, V), t, runs = best_of(plain_np, dev, R)
    rows.append(dict(part=rows[0]["part"], impl=f"torch: H2D + svd_lowrank(q={q}, niter=4)",
                     seconds=t, runs=runs, err_ratio=projection_error(A, V[:, :k]) / opt,
                     **profile_counts(plain_np, dev)))

    def ours_dev():
        return randomized_svd(A, k, generator=torch.Generator().manual_seed(0))

    (_, _, Vt), t, runs = best_of(ours_dev, dev, R)
    rows.append(dict(part=rows[0]["part"], impl="sksvd.linalg.randomized_svd(device tensor)",
                     seconds=t, runs=runs, err_ratio=projection_error(A, Vt.T) / opt,
                     **profile_counts(ours_dev, dev)))

    def plain_dev():
        return torch.svd_lowrank(A, q=q, niter=4)

    (_, _, V), t, runs = best_of(plain_dev, dev, R)
    rows.append(dict(part=rows[0]["part"], impl=f"torch.svd_lowrank(device tensor, q={q}, "
                     "niter=4)", seconds=t, runs=runs,
                     err_ratio=projection_error(A, V[:, :k]) / opt,
                     **profile_counts(plain_dev, dev)))
    for r in rows:
        log(f"  {r['impl']}: {r['seconds']:.4f} s, error ratio {r['err_ratio']:.4f}")
    return rows, {"optimal_error": opt}


def _csr_to_device(X, dev):
    import warnings

    import torch

    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    crow = torch.from_numpy(X.indptr.astype(np.int64)).to(dev)
    col = torch.from_numpy(X.indices.astype(np.int64)).to(dev)
    val = torch.from_numpy(X.data).to(dev)
    return torch.sparse_csr_tensor(crow, col, val, size=X.shape, check_invariants=False)


def plain_randomized_svd(X, k, q, dev, n_iter=2, seed=0):
    """Plain torch: upload the CSR, Gaussian on the device, ``n_iter`` power iterations."""
    import torch

    Xd = _csr_to_device(X, dev)
    try:  # the transpose made on the device
        Xt = Xd.t().to_sparse_csr()
    except (RuntimeError, NotImplementedError):  # else on the host
        Xt = _csr_to_device(X.T.tocsr(), dev)
    g = torch.Generator(device=dev).manual_seed(seed)
    Y = torch.sparse.mm(Xd, torch.randn(X.shape[1], q, generator=g, device=dev))
    Qm = torch.linalg.qr(Y)[0]
    for _ in range(n_iter):
        Z = torch.linalg.qr(torch.sparse.mm(Xt, Qm))[0]
        Qm = torch.linalg.qr(torch.sparse.mm(Xd, Z))[0]
    Bt = torch.sparse.mm(Xt, Qm)  # (X^T Q) = B^T, n_items x q
    _, _, Wt = torch.linalg.svd(Bt.T, full_matrices=False)
    return Wt[:k].T.contiguous(), Xd  # V_k (n_items, k)


def energy(Xd, V):
    import torch

    return float((torch.sparse.mm(Xd, V.to(Xd.dtype)).double() ** 2).sum())


def plain_topk(Xd, X, V, top, dev, batch=8192):
    """Plain torch top-``top``: fold-in ``X V``, batched GEMM, ``-inf`` at seen items, topk."""
    import torch

    W = torch.sparse.mm(Xd, V)
    n_users, n_items = X.shape
    indptr = X.indptr.astype(np.int64)
    crow = Xd.crow_indices()
    col = Xd.col_indices()
    counts = crow[1:] - crow[:-1]
    row_of = torch.repeat_interleave(torch.arange(n_users, device=dev), counts,
                                     output_size=X.nnz)
    ids = torch.empty(n_users, top, dtype=torch.int64, device=dev)
    for s in range(0, n_users, batch):
        e = min(s + batch, n_users)
        S = W[s:e] @ V.T
        lo, hi = indptr[s], indptr[e]
        S[row_of[lo:hi] - s, col[lo:hi]] = -torch.inf
        ids[s:e] = torch.topk(S, top, dim=1).indices
    return ids.cpu().numpy()


def part_puresvd(sz, X, dev, log):
    import torch

    from sksvd import SVDRecommender

    k, R, top = sz["k"], sz["repeat"], sz["top"]
    rows = []

    def fit():
        return SVDRecommender(k, shrinkage=0.0, device=str(dev), random_state=0).fit(X)

    rec, t, runs = best_of(fit, dev, R)
    V_ours = torch.from_numpy(np.ascontiguousarray(rec.item_factors_)).to(dev)
    fit_prof = profile_counts(fit, dev)

    def plain():
        return plain_randomized_svd(X, k, k + 10, dev)

    (V_plain, Xd), t_plain, runs_plain = best_of(plain, dev, R)
    e_ours, e_plain = energy(Xd, V_ours), energy(Xd, V_plain)
    part = f"2 PureSVD fit {X.shape[0]}x{X.shape[1]} nnz={X.nnz} k={k}"
    rows.append(dict(part=part, impl="sksvd SVDRecommender.fit", seconds=t, runs=runs,
                     energy_ratio=e_ours / e_plain, **fit_prof))
    rows.append(dict(part=part, impl="torch: H2D + randomized SVD (2 power it.)",
                     seconds=t_plain, runs=runs_plain, energy_ratio=1.0,
                     **profile_counts(plain, dev)))
    log(f"  fit: sksvd {t:.3f} s vs plain {t_plain:.3f} s; energy ratio {e_ours / e_plain:.4f}")

    def ours_top():
        return rec.recommend(X, k=top)

    (ids_ours, _), t, runs = best_of(ours_top, dev, R)
    V32 = V_ours.to(torch.float32)

    def plain_top():
        return plain_topk(Xd, X, V32, top, dev)

    ids_plain, t_plain, runs_plain = best_of(plain_top, dev, R)
    m = min(2000, X.shape[0])
    agree = float(np.mean([set(a) == set(b) for a, b in zip(ids_ours[:m], ids_plain[:m], strict=True)]))
    part = f"3 top-{top} all {X.shape[0]} users, seen masked"
    rows.append(dict(part=part, impl="sksvd recommend", seconds=t, runs=runs,
                     same_lists_first_2000=agree, **profile_counts(ours_top, dev)))
    rows.append(dict(part=part, impl="torch: X V, batched GEMM, scatter -inf, topk",
                     seconds=t_plain, runs=runs_plain, same_lists_first_2000=1.0,
                     **profile_counts(plain_top, dev)))
    log(f"  top-{top}: sksvd {t:.3f} s vs plain {t_plain:.3f} s; same lists {agree:.4f}")
    return rows


def _epoch_rows(cls, X, params, dev, part, label, log):
    """Set-up and per-epoch time of ``cls(n_epochs=1)`` and ``cls(n_epochs=3)`` fits."""
    def fit(n):
        return cls(n_epochs=n, device=str(dev), random_state=0, **params).fit(X)

    fit(1)  # warm-up
    _, t1, runs1 = best_of(lambda: fit(1), dev, 1, warmup=0)
    _, t3, runs3 = best_of(lambda: fit(3), dev, 1, warmup=0)
    epoch = max((t3 - t1) / 2, 0.0)
    row = dict(part=part, impl=label, seconds=epoch, fit_1_epoch_s=t1, fit_3_epochs_s=t3,
               setup_s=max(t1 - epoch, 0.0), **profile_counts(lambda: fit(1), dev))
    log(f"  {label}: epoch {epoch:.3f} s (fit 1 epoch {t1:.3f} s, 3 epochs {t3:.3f} s)")
    return row


def plain_sgd_epoch(X, factors, batch, dev, lr=0.03, reg=0.06, seed=0):
    """A closure running one plain-torch minibatch-SGD epoch of Funk's biased model."""
    import torch

    coo = X.tocoo()
    g = torch.Generator(device=dev).manual_seed(seed)
    users = torch.from_numpy(coo.row.astype(np.int64)).to(dev)
    items = torch.from_numpy(coo.col.astype(np.int64)).to(dev)
    r = torch.from_numpy(coo.data.astype(np.float32)).to(dev)
    mu = r.mean()
    P = 0.02 * torch.randn(X.shape[0], factors, generator=g, device=dev)
    Q = 0.02 * torch.randn(X.shape[1], factors, generator=g, device=dev)
    bu = torch.zeros(X.shape[0], device=dev)
    bi = torch.zeros(X.shape[1], device=dev)
    n = r.numel()

    def epoch():
        perm = torch.randperm(n, generator=g, device=dev)
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            u, i = users[idx], items[idx]
            pu, qi = P[u], Q[i]
            e = r[idx] - (mu + bu[u] + bi[i] + (pu * qi).sum(1))
            bu.index_add_(0, u, lr * (e - reg * bu[u]))
            bi.index_add_(0, i, lr * (e - reg * bi[i]))
            P.index_add_(0, u, lr * (e[:, None] * qi - reg * pu))
            Q.index_add_(0, i, lr * (e[:, None] * pu - reg * qi))
        return e

    return epoch


def part_funk(sz, X, dev, log):
    from sksvd import FunkSVD

    f, R = sz["funk_factors"], sz["repeat"]
    part = f"4 FunkSVD epoch {X.nnz} ratings, {f} factors"
    rows = [_epoch_rows(FunkSVD, X, {"n_components": f, "loss": "mse"}, dev, part,
                        "sksvd FunkSVD loss='mse' (SGD, default batch)", log),
            _epoch_rows(FunkSVD, X, {"n_components": f}, dev, part,
                        "sksvd FunkSVD() defaults (loss='mse_all', ALS sweep)", log)]
    epoch = plain_sgd_epoch(X, f, sz["plain_batch"], dev)
    _, t, runs = best_of(epoch, dev, R)
    rows.append(dict(part=part, impl=f"torch: minibatch SGD epoch (batch {sz['plain_batch']})",
                     seconds=t, runs=runs, **profile_counts(epoch, dev)))
    log(f"  plain SGD epoch: {t:.3f} s")
    return rows


def part_asy(sz, dev, log):
    from sksvd import AsySVD

    n_users, n_items, nnz = sz["asy"]
    X = powerlaw_csr_torch(n_users, n_items, nnz, dev, seed=1)
    f = sz["asy_factors"]
    part = f"5 AsySVD epoch {X.shape[0]}x{X.shape[1]} nnz={X.nnz}, {f} factors"
    return [_epoch_rows(AsySVD, X, {"n_components": f, "loss": "mse"}, dev, part,
                        "sksvd AsySVD loss='mse' (default batch)", log),
            _epoch_rows(AsySVD, X, {"n_components": f}, dev, part,
                        "sksvd AsySVD() defaults (loss='bpr', SVD start)", log)]


# ----------------------------------------------------------------------------- main
COLUMNS = ["part", "impl", "seconds", "err_ratio", "energy_ratio", "same_lists_first_2000",
           "setup_s", "launches", "syncs", "memcpy_async", "h2d", "h2d_pageable", "d2h"]


def main(device="cuda", quick=False, full=False, log=print):
    import torch

    from sksvd._backend import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    # On the CPU the small sizes unless asked (the full ones take tens of minutes there).
    small = quick or (dev.type == "cpu" and not full)
    sz = QUICK if small else FULL
    t_start = time.perf_counter()
    sections = {}
    torch.ones(1, device=dev).sum().item()  # start-up out of the timings

    errors = {}

    def section(name, fn, *args, default=None):
        # A part that fails is recorded and the others still run.
        t0 = time.perf_counter()
        log(f"[{NAME}] {name}")
        try:
            out = fn(*args)
        except Exception as exc:  # noqa: BLE001 - reported in the results
            errors[name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            log(f"  FAILED: {errors[name]}")
            traceback.print_exc()
            out = default
        sections[name] = time.perf_counter() - t0
        return out

    svd_rows, svd_extra = section("svd", part_svd, sz, dev, log, default=([], {}))
    X = section("data", powerlaw_csr_torch, *sz["rec"], dev)
    pure_rows = funk_rows = []
    if X is not None:
        log(f"  matrix {X.shape}, nnz {X.nnz}")
        pure_rows = section("puresvd", part_puresvd, sz, X, dev, log, default=[])
        funk_rows = section("funk", part_funk, sz, X, dev, log, default=[])
    del X
    asy_rows = section("asy", part_asy, sz, dev, log, default=[])
    rows = svd_rows + pure_rows + funk_rows + asy_rows
    for r in rows:
        if "runs" in r:
            r["runs"] = " / ".join(f"{x:.4f}" for x in r["runs"])
    # "ours / peer" time ratios measured in this run (the regression guard's format).
    ratios = {}
    pairs = [tuple(svd_rows[0:2]), tuple(svd_rows[2:4]), tuple(pure_rows[0:2]),
             tuple(pure_rows[2:4]), tuple(funk_rows[0:1] + funk_rows[2:3])]
    for pair in pairs:
        if len(pair) < 2:
            continue
        ours, peer = pair
        name = f"{dev.type}: {ours['part']}: {ours['impl']} / {peer['impl']}"
        ratios[name] = {"value": ours["seconds"] / peer["seconds"], "better": "lower",
                        "ours": ours["seconds"], "peer": peer["seconds"]}
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    notes = (__doc__.split("\n\n", 2)[2].strip() + "\n\n"
             + f"Sizes: {'small' if small else 'full'} {sz}. Device: {dev}"
             + (f" ({gpu})" if gpu else "") + f", torch {torch.__version__}"
             + (f", CUDA {torch.version.cuda}" if dev.type == "cuda" else "")
             + f". Total {time.perf_counter() - t_start:.1f} s."
             + "".join(f"\n\n**{k} failed**: `{v}`" for k, v in errors.items()))
    h.write_results(NAME, rows, device=dev.type, notes=notes, columns=COLUMNS,
                    ratios=ratios, ratios_title="sksvd time / plain torch time",
                    extra={"sections_s": sections, "errors": errors, "quick": quick,
                           "sizes": sz, "gpu": gpu, **svd_extra})
    log(f"[{NAME}] done in {time.perf_counter() - t_start:.1f} s"
        + (f"; failed: {', '.join(errors)}" if errors else ""))
    return rows, errors


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--quick", action="store_true", help="small sizes (seconds on a CPU)")
    p.add_argument("--full", action="store_true",
                   help="the full sizes on the CPU too (default there: the small ones)")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = _parse()
    _, failed = main(args.device, args.quick, args.full)
    raise SystemExit(1 if failed else 0)
