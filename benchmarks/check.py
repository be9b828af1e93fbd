"""Regression guard: a fresh ``--quick`` run against the recorded ours/peer ratios.

``python -m benchmarks.check [--fresh DIR] [--baseline DIR] [--tolerance 0.2]``

Benchmarks record ratios "ours / peer" measured in the same run (e.g. fit
time of SVDRecommender over scipy ``svds``, NDCG@10 of PureSVD over implicit
ALS) in the ``"ratios"`` entry of their results JSON, each with the direction
that is better (``"lower"`` or ``"higher"``). Without ``--fresh`` this runs
``python -m benchmarks.run --quick`` into a temporary folder, then compares
every ratio with the one recorded in ``benchmarks/results/quick/``. It fails
(exit status 1) when a ratio worsens by more than the tolerance (20%): for
"lower is better", fresh > recorded * 1.2; for "higher is better",
fresh < recorded * 0.8; and when a recorded ratio is missing from the fresh run.

Timing ratios are noisy on a shared machine: a benchmark with a worse ratio is
run again (``--retries``, default 1) and each ratio keeps the better of its
fresh values, so that only a regression that persists fails the check. The
fresh results stay in the printed folder for inspection.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from . import _harness as h
from .report import collect, load_results

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "results" / "quick"


def ratios_of(folder):
    """``{(benchmark, ratio name): row}`` from the results JSON files in ``folder``."""
    return {(r["benchmark"], r["ratio"]): r for r in collect(load_results(folder), "ratios")}


def compare(recorded, fresh, tolerance=0.2):
    """Rows comparing each recorded ratio with the fresh one; ``status`` is ok/worse/missing."""
    rows = []
    for key, rec in sorted(recorded.items()):
        new = fresh.get(key)
        row = {"benchmark": key[0], "ratio": key[1], "better": rec.get("better"),
               "recorded": rec.get("value"), "fresh": None if new is None else new.get("value"),
               "change": None, "status": "missing"}
        if new is not None and rec.get("value"):
            change = new["value"] / rec["value"]
            row["change"] = change
            if rec.get("better") == "lower":
                worse = change > 1 + tolerance
            else:
                worse = change < 1 - tolerance
            row["status"] = "WORSE" if worse else "ok"
        rows.append(row)
    for key in sorted(set(fresh) - set(recorded)):
        rows.append({"benchmark": key[0], "ratio": key[1], "better": fresh[key].get("better"),
                     "recorded": None, "fresh": fresh[key].get("value"), "change": None,
                     "status": "new (not recorded)"})
    return rows


def _module_of(results_name):
    """The benchmark module that writes a results file (``topn_speed`` -> ``topn``)."""
    names = set(run_names())
    parts = results_name.split("_")
    for i in range(len(parts), 0, -1):
        if "_".join(parts[:i]) in names:
            return "_".join(parts[:i])
    return results_name


def run_names():
    from .run import discover

    return discover()


def _run_quick(only, device):
    """Run ``benchmarks.run --quick`` (``only`` those) into a new folder; return its ratios."""
    out = tempfile.mkdtemp(prefix="sksvd_check_")
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--device", device, "--out", out]
    if only:
        cmd += ["--only", ",".join(only)]
    subprocess.run(cmd, cwd=HERE.parent, check=False)
    print(f"fresh results in {out}")
    return ratios_of(out)


def _best(a, b):
    """Per ratio, the better of two fresh values."""
    out = dict(a)
    for key, row in b.items():
        old = out.get(key)
        if old is None:
            out[key] = row
            continue
        lower = row.get("better") == "lower"
        if (row["value"] < old["value"]) if lower else (row["value"] > old["value"]):
            out[key] = row
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description="Compare a fresh quick run with recorded ratios.")
    p.add_argument("--fresh", default=None, help="results folder of a fresh run (default: run "
                                                 "benchmarks.run --quick into a temp folder)")
    p.add_argument("--baseline", default=str(BASELINE), help="recorded results folder")
    p.add_argument("--tolerance", type=float, default=0.2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", default=None, help="passed to benchmarks.run; limits the check "
                                                "to those benchmarks")
    p.add_argument("--retries", type=int, default=1,
                   help="runs again of a benchmark with a worse ratio (default 1)")
    args = p.parse_args(argv)
    recorded = ratios_of(args.baseline)
    if not recorded:
        print(f"no recorded ratios in {args.baseline}: run `python -m benchmarks.run --quick` "
              "and commit its results first")
        return 2
    if args.only:
        keep = set()
        for name in args.only.split(","):
            keep |= {k for k in recorded if k[0] == name or k[0].startswith(name + "_")}
        recorded = {k: v for k, v in recorded.items() if k in keep}
    if args.fresh is not None:
        rows = compare(recorded, ratios_of(args.fresh), args.tolerance)
    else:
        only = args.only.split(",") if args.only else None
        fresh = _run_quick(only, args.device)
        rows = compare(recorded, fresh, args.tolerance)
        for _ in range(args.retries):
            again = sorted({_module_of(r["benchmark"]) for r in rows if r["status"] == "WORSE"})
            if not again:
                break
            print(f"worse ratios in {', '.join(again)}: running them again")
            fresh = _best(fresh, _run_quick(again, args.device))
            rows = compare(recorded, fresh, args.tolerance)
    print(h.markdown_table(rows, ["benchmark", "ratio", "better", "recorded", "fresh", "change",
                                  "status"]))
    bad = [r for r in rows if r["status"] in ("WORSE", "missing")]
    if bad:
        print(f"FAILED: {len(bad)} ratio(s) worse by more than {args.tolerance:.0%} or missing")
        return 1
    print(f"OK: {len(rows)} ratio(s) within {args.tolerance:.0%} of the recorded ones")
    return 0


if __name__ == "__main__":
    sys.exit(main())
