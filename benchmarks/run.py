"""Run the benchmark suite and write ``REPORT.md``.

``python -m benchmarks.run [--quick] [--device cpu|cuda] [--only NAME,...]``
(``make bench``, ``make bench-quick``, ``sksvd bench``).

Each ``benchmarks/bench_<name>.py`` runs in its own process (one at a time:
heavy benchmarks never overlap) as ``python -m benchmarks.bench_<name>
[--quick] --device D`` plus the flags of :data:`FULL_FLAGS` for a full run.
Results go to a folder outside the source tree, ``$SKSVD_BENCH_OUT`` or
``~/.cache/sksvd/bench/`` (``full/`` or ``quick/``), so that running the
suite never rewrites the tracked files; ``--out`` names another folder, e.g.
``--out benchmarks/results`` (full run) or ``--out benchmarks/results/quick``
to update the recorded results (the latter's ratios are the baseline of
:mod:`benchmarks.check`). Then :func:`benchmarks.report.build_report` writes
``REPORT.md`` and ``REPORT.json`` in that folder.

Before anything runs, the optional packages each chosen benchmark needs
(:data:`REQUIRES`: the ``[bench]`` extra, matplotlib) are looked up; when one
is missing the suite stops at once and names them (``--skip-missing`` runs
the other benchmarks instead).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .report import build_report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Flags some benchmarks need to include their heavy part in a full run.
FULL_FLAGS = {"rating": ["--scale"], "asysvd": ["--speed"]}
# Optional packages (import name -> pip requirement) each benchmark compares against or draws
# with; the [bench] extra holds the peers.
REQUIRES = {
    "asysvd": {"surprise": "scikit-surprise"},
    "rating": {"surprise": "scikit-surprise"},
    "topn": {"implicit": "implicit"},
    "defaults": {"implicit": "implicit"},
    "growth": {"implicit": "implicit", "matplotlib": "matplotlib"},
}


def default_out(quick):
    """The results folder when ``--out`` is not given: outside the source tree."""
    base = os.environ.get("SKSVD_BENCH_OUT")
    if base:
        root = Path(base).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(cache) / "sksvd" / "bench"
    return root / ("quick" if quick else "full")


def missing_requirements(names, find_spec=None):
    """``{benchmark: [pip requirement, ...]}`` of the optional packages not installed."""
    find_spec = find_spec or importlib.util.find_spec
    out = {}
    for name in names:
        missing = [req for module, req in REQUIRES.get(name, {}).items()
                   if find_spec(module) is None]
        if missing:
            out[name] = missing
    return out


def discover():
    """Benchmark names (``bench_<name>.py``), sorted."""
    return sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))


def command_for(name, quick, device):
    cmd = [sys.executable, "-m", f"benchmarks.bench_{name}", "--device", device]
    if quick:
        cmd.append("--quick")
    else:
        cmd += FULL_FLAGS.get(name, [])
    return cmd


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def run_one(name, quick, device, out, timeout=None, log=print):
    """Run one benchmark in a subprocess writing into ``out``; return its run record."""
    cmd = command_for(name, quick, device)
    env = dict(os.environ, SKSVD_BENCH_RESULTS=str(out))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    shown = "python " + " ".join(cmd[1:])
    log(f"== {name}: {shown}")
    t0 = time.perf_counter()
    logfile = Path(out) / f"{name}.log"
    with open(logfile, "w") as fh:
        # Its own process group, so that a benchmark stopped at the time limit
        # takes its worker processes (forkserver children) down with it.
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
            status = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            status = f"stopped after {timeout:g} s"
        except BaseException:
            _kill_group(proc)
            raise
    seconds = time.perf_counter() - t0
    log(f"   {status} in {seconds:.1f}s (log: {logfile})")
    if status != "ok":
        tail = logfile.read_text().splitlines()[-15:]
        log("   " + "\n   ".join(tail))
    return {"benchmark": name, "command": shown, "seconds": seconds, "status": status}


def main(argv=None):
    p = argparse.ArgumentParser(description="Run the sksvd benchmark suite, write REPORT.md.")
    p.add_argument("--quick", action="store_true",
                   help="reduced run (minutes)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--only", default=None,
                   help="comma-separated benchmark names, among: " + ", ".join(discover()))
    p.add_argument("--out", default=None,
                   help="results folder (default: $SKSVD_BENCH_OUT/{full,quick}, else "
                        "~/.cache/sksvd/bench/{full,quick}, outside the source tree; "
                        "benchmarks/results[/quick] updates the recorded results)")
    p.add_argument("--skip-missing", action="store_true",
                   help="skip the benchmarks whose optional packages are not installed "
                        "instead of stopping")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per benchmark (default: 600 with --quick, none otherwise)")
    p.add_argument("--report-only", action="store_true",
                   help="rebuild REPORT.md from the results already in the folder")
    args = p.parse_args(argv)
    names = discover()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            p.error(f"--only: unknown benchmark(s) {', '.join(unknown)}; "
                    f"expected some of {', '.join(names)}")
        names = wanted
    missing = {} if args.report_only else missing_requirements(names)
    if missing:
        needed = sorted({r for reqs in missing.values() for r in reqs})
        what = "; ".join(f"{n} needs {', '.join(r)}" for n, r in missing.items())
        if not args.skip_missing:
            p.error(f"missing optional packages: {what}. Install them (pip install "
                    f"'sksvd[bench]' or pip install {' '.join(needed)}), or pass --only "
                    "without those benchmarks, or --skip-missing")
        print(f"== skipped ({what})")
        names = [n for n in names if n not in missing]
    out = Path(args.out) if args.out else default_out(args.quick)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    timeout = args.timeout if args.timeout is not None else (600.0 if args.quick else None)
    runs_path = out / "run.json"
    runs = []
    if args.report_only and runs_path.exists():
        runs = json.loads(runs_path.read_text()).get("runs", [])
    if not args.report_only:
        previous = json.loads(runs_path.read_text()).get("runs", []) if runs_path.exists() else []
        t0 = time.perf_counter()
        runs = [run_one(n, args.quick, args.device, out, timeout) for n in names]
        done = {r["benchmark"] for r in runs}
        runs = [r for r in previous if r["benchmark"] not in done] + runs
        print(f"== suite: {time.perf_counter() - t0:.1f}s")
        runs_path.write_text(json.dumps({"quick": args.quick, "device": args.device,
                                         "runs": runs}, indent=2))
    command = "python -m benchmarks.run" + (" --quick" if args.quick else "") + (
        f" --device {args.device}" if args.device != "cpu" else "")
    build_report(out, quick=args.quick, run_info=runs, command=command)
    print(f"== report: {out / 'REPORT.md'}")
    failed = [r for r in runs if r["benchmark"] in names and r["status"] != "ok"]
    return 1 if failed and not args.report_only else 0


if __name__ == "__main__":
    sys.exit(main())
