"""One harness for every benchmark: timing, peak memory, versions, machine, results files.

Each benchmark script builds rows (dicts) and calls :func:`write_results`,
which writes ``benchmarks/results/<name>.json`` (rows plus metadata: the exact
command, package versions, machine, device, seed) and ``<name>.md`` (the same
rows as a markdown table).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import scipy.sparse as sp

# ``benchmarks.run --quick`` (and ``benchmarks.check``) send results elsewhere through
# SKSVD_BENCH_RESULTS, so a quick run never overwrites the recorded full results.
RESULTS = Path(os.environ.get("SKSVD_BENCH_RESULTS")
               or Path(__file__).resolve().parent / "results")

_PACKAGES = ("sksvd", "torch", "numpy", "scipy", "scikit-learn", "pandas", "implicit",
             "scikit-surprise", "threadpoolctl")


def versions():
    """Installed versions of the packages the benchmarks compare."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine(device="cpu"):
    """A short description of this machine and of the device used."""
    import torch

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def timed(fn, *args, repeat=1, warmup=0, sync=None, **kwargs):
    """Run ``fn`` and return ``(result, best_seconds)`` over ``repeat`` runs."""
    for _ in range(warmup):
        fn(*args, **kwargs)
    best, result = float("inf"), None
    for _ in range(repeat):
        if sync:
            sync()
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        if sync:
            sync()
        best = min(best, time.perf_counter() - t0)
    return result, best


def current_rss():
    """This process's resident size now, in bytes (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss():
    """Reset this process's peak resident size (Linux ``VmHWM``; no-op elsewhere)."""
    # Linux: writing 5 to clear_refs resets VmHWM, so the peak counts only what
    # follows (not the unpickling of the arguments, nor, for "spawn", the
    # parent's size that getrusage's ru_maxrss inherits across exec).
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss():
    """This process's peak resident size in bytes since start or :func:`reset_peak_rss`."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(conn, fn, args, kwargs):
    try:
        start_rss = current_rss()
        reset_peak_rss()
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - t0
        peak = max(peak_rss(), current_rss())
        conn.send(("ok", result, seconds, peak, max(0, peak - start_rss)))
    except BaseException as exc:  # report the child's failure to the parent
        conn.send(("error", repr(exc), None, None, None))
    finally:
        conn.close()


def measure(fn, *args, start_method="fork", timeout=None, **kwargs):
    """Run ``fn(*args, **kwargs)`` in a forked child; return a dict with its time and memory.

    ``peak_rss`` is the child's peak resident set size; ``peak_extra`` that
    peak minus the resident size when the child started (i.e. memory beyond
    the inputs the parent already held). ``result`` must be picklable (keep
    it small: numbers, not models).

    ``start_method="forkserver"`` (or "spawn") starts the child from a fresh
    interpreter instead: needed when the parent has already run torch's
    (OpenMP) parallel kernels, after which a forked child deadlocks in its
    first parallel torch op. ``fn`` must then be a module-level function and
    ``args`` picklable; the child's starting size then includes the unpickled ``args`` and the
    modules imported to unpickle ``fn``, so ``peak_extra`` is still the memory
    beyond the inputs. With ``timeout`` (seconds) a child still running then
    is killed and :class:`TimeoutError` raised.
    """
    ctx = mp.get_context(start_method)
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs))
    proc.start()
    child.close()
    if timeout is not None and not parent.poll(timeout):
        proc.kill()
        proc.join()
        raise TimeoutError(f"benchmark child still running after {timeout:g} s: killed")
    try:
        status, result, seconds, peak, extra = parent.recv()
    except EOFError:  # the child died without reporting (e.g. killed for memory)
        proc.join()
        raise RuntimeError(f"benchmark child died (exit code {proc.exitcode})") from None
    proc.join()
    if status != "ok":
        raise RuntimeError(f"benchmark child failed: {result}")
    return {"result": result, "seconds": seconds, "peak_rss_mb": peak / 2**20,
            "peak_extra_mb": extra / 2**20}


def matmul_gflops(n=4096, dtype="float32", device="cpu", repeat=3):
    """This machine's float32 (or given dtype) GEMM rate, in GFLOP/s.

    On the CPU the best of torch's BLAS and numpy's BLAS (both are on the
    machine, and they differ: OpenBLAS beats torch's MKL on AMD EPYC), so a
    share of it is a share of what the machine can do, not of one library.
    """
    import torch

    dt = getattr(torch, dtype)
    a = torch.randn(n, n, dtype=dt, device=device)
    b = torch.randn(n, n, dtype=dt, device=device)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else None
    _, sec = timed(lambda: a @ b, repeat=repeat, warmup=1, sync=sync)
    if not str(device).startswith("cuda"):
        an, bn = a.numpy(), b.numpy()
        _, sec_np = timed(lambda: an @ bn, repeat=repeat, warmup=1)
        sec = min(sec, sec_np)
    return 2.0 * n**3 / sec / 1e9


def powerlaw_csr(n_users, n_items, nnz, *, seed=0, exponent=1.0, ratings=True):
    """A synthetic users x items CSR with power-law row and column popularity.

    Users and items get Zipf-like weights ``rank**-exponent`` (randomly
    permuted); ``1.5 * nnz`` (user, item) pairs are drawn with probability
    proportional to the product of the weights and deduplicated. If that
    leaves more than ``nnz`` distinct pairs, a random subset of ``nnz`` is
    kept; if fewer (the head saturates), the rest is topped up with uniform
    random pairs, so the result has exactly ``nnz`` entries. Values are
    ratings 1..5 (``ratings=True``) or ones.
    """
    rng = np.random.default_rng(seed)

    def cdf(n):
        w = rng.permutation(np.arange(1, n + 1, dtype=np.float64) ** -exponent)
        return np.cumsum(w / w.sum())

    def draw(size, cu=None, ci=None):
        if cu is None:
            u = rng.integers(0, n_users, size)
            i = rng.integers(0, n_items, size)
        else:
            u = np.minimum(np.searchsorted(cu, rng.random(size)), n_users - 1)
            i = np.minimum(np.searchsorted(ci, rng.random(size)), n_items - 1)
        return u.astype(np.int64) * n_items + i

    keys = np.unique(draw(int(1.5 * nnz), cdf(n_users), cdf(n_items)))
    while keys.size < nnz:
        extra = draw(int(1.2 * (nnz - keys.size)) + 1000)
        keys = np.union1d(keys, extra)
    keys = np.sort(rng.choice(keys, size=nnz, replace=False))
    rows, cols = keys // n_items, keys % n_items
    if ratings:
        data = rng.integers(1, 6, size=nnz).astype(np.float32)
    else:
        data = np.ones(nnz, dtype=np.float32)
    X = sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_items))
    X.sort_indices()
    return X


def _fmt(v):
    if isinstance(v, float):
        if v != v:
            return "nan"
        if abs(v) >= 100:
            return f"{v:,.1f}"
        return f"{v:.4g}"
    return "" if v is None else str(v)


def markdown_table(rows, columns=None):
    """Rows (list of dicts) as a markdown table (cells formatted with pandas)."""
    if not rows:
        return "(no rows)\n"
    import pandas as pd

    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    cells = pd.DataFrame([[r.get(c) for c in columns] for r in rows], columns=columns,
                         dtype=object).map(_fmt)
    body = ("| " + cells.agg(" | ".join, axis=1) + " |").tolist()
    return "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *body]) + "\n"


def write_results(name, rows, *, device="cpu", notes=None, extra=None, columns=None,
                  tables=None, ratios=None, ratios_title="Ratios"):
    """Write ``results/<name>.json`` and ``results/<name>.md``; return the markdown text.

    ``tables`` (dict title -> rows) adds further sections to the markdown.
    ``ratios`` (dict name -> ``{"value", "better", ...}``, the ours/peer ratios
    that :mod:`benchmarks.check` guards) goes into the JSON as ``"ratios"`` and
    into the markdown as a table titled ``ratios_title``, after ``tables``.
    """
    if ratios is not None:
        extra = {**(extra or {}), "ratios": ratios}
        tables = {**(tables or {}), ratios_title: [{"ratio": k, **v} for k, v in ratios.items()]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    prog = f"-m {spec.name}" if spec is not None and spec.name else os.path.relpath(sys.argv[0])
    command = "python " + " ".join([prog] + sys.argv[1:])
    meta = {"name": name, "command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "versions": versions(), "machine": machine(device), "notes": notes or ""}
    payload = {"meta": meta, "rows": rows, "tables": tables or {}, **(extra or {})}
    suffix = "" if str(device) == "cpu" else "_" + str(device).replace(":", "")
    (RESULTS / f"{name}{suffix}.json").write_text(json.dumps(payload, indent=2, default=str))
    md = [f"# {name}" + (f" ({device})" if suffix else ""), "",
          f"Command: `{command}`  ", f"Date: {meta['date']}  ",
          f"Machine: {meta['machine'].get('cpu_model', meta['machine']['processor'])}, "
          f"{meta['machine']['cpu_count']} cores, torch threads "
          f"{meta['machine']['torch_threads']}, device {device}  ",
          "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v), ""]
    if notes:
        md += [notes, ""]
    md.append(markdown_table(rows, columns))
    for title, trows in (tables or {}).items():
        md += [f"## {title}", "", markdown_table(trows)]
    text = "\n".join(md)
    (RESULTS / f"{name}{suffix}.md").write_text(text)
    return text


def cached_powerlaw_csr(n_users, n_items, nnz, *, seed=0, ratings=True, cache_dir=None):
    """:func:`powerlaw_csr`, cached as an ``.npz`` outside the repository (it takes minutes).

    ``cache_dir`` defaults to ``$SKSVD_BENCH_CACHE``, else ``/tmp/sksvd_bench_cache``.
    """
    cache_dir = cache_dir or os.environ.get("SKSVD_BENCH_CACHE", "/tmp/sksvd_bench_cache")
    path = Path(cache_dir) / f"powerlaw_{n_users}x{n_items}_{nnz}_s{seed}_{int(ratings)}.npz"
    if path.exists():
        return sp.load_npz(path).tocsr()
    X = powerlaw_csr(n_users, n_items, nnz, seed=seed, ratings=ratings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    sp.save_npz(tmp, X, compressed=False)
    os.replace(tmp, path)
    return X
