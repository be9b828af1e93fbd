"""Gather the results files of one run into ``REPORT.md`` (and ``REPORT.json``).

Every benchmark writes ``<name>[_<device>].json`` and ``.md`` through
:func:`benchmarks._harness.write_results`; this module reads them back and
writes one report: how to reproduce it, the machine and package versions,
every check and every ours/peer ratio, then each benchmark's own tables (its
protocol in words comes with them), grouped in one section per device, with
the figures (``*.png``) of that device.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from . import _harness as h

_SKIP = {"REPORT.json", "run.json"}


def load_results(folder):
    """``{stem: payload}`` of every results JSON in ``folder`` (the report's own excluded)."""
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        if path.name in _SKIP:
            continue
        try:
            payload = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(payload, dict) and "meta" in payload:
            out[path.stem] = payload
    return out


def device_of(payload):
    """The device a results file was measured on ("cpu", "cuda", ...)."""
    dev = str(payload.get("meta", {}).get("machine", {}).get("device", "cpu"))
    return "cpu" if dev.startswith("cpu") else dev.split(":")[0]


def collect(results, key):
    """Rows ``{"benchmark": stem, ...}`` from each payload's ``key``.

    ``key`` holds a list of row dicts, or a dict name -> row dict (or name ->
    value: a bool for "checks", a number for "ratios").
    """
    name_field = "check" if key == "checks" else "ratio"
    rows = []
    for stem, payload in results.items():
        value = payload.get(key)
        if isinstance(value, list):
            rows += [{"benchmark": stem, **r} for r in value if isinstance(r, dict)]
        elif isinstance(value, dict):
            for name, r in value.items():
                if not isinstance(r, dict):
                    r = {"passed": r} if isinstance(r, bool) else {"value": r}
                rows.append({"benchmark": stem, name_field: name, **r})
    return rows


def _demote(markdown, levels=2):
    """Push markdown headings down ``levels`` levels (a results file becomes a subsection)."""
    return re.sub(r"^(#+)", lambda m: m.group(1) + "#" * levels, markdown, flags=re.M)


def _versions_table(results):
    for payload in results.values():
        v = payload["meta"].get("versions", {})
        return [{"package": k, "version": val} for k, val in v.items() if val]
    return []


def _machine_rows(results, device):
    for payload in results.values():
        if device_of(payload) == device:
            return [{"field": k, "value": v} for k, v in payload["meta"]["machine"].items()]
    return []


def build_report(folder, *, quick=False, run_info=None, command=None):
    """Write ``folder/REPORT.md`` and ``folder/REPORT.json``; return the markdown text.

    In a full report, results files named ``*_quick`` (a reduced run written
    into the full folder) are left out.
    """
    folder = Path(folder)
    results = load_results(folder)
    if not quick:
        results = {k: v for k, v in results.items() if not k.endswith("_quick")}
    devices = sorted({device_of(p) for p in results.values()}, key=lambda d: (d != "cpu", d))
    checks = collect(results, "checks")
    ratios = collect(results, "ratios")
    command = command or ("python -m benchmarks.run" + (" --quick" if quick else ""))
    md = ["# sksvd benchmark report" + (" (quick run)" if quick else ""), "",
          f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} by `{command}` "
          "(`make bench`, or `make bench-quick` for the reduced run). "
          "Every figure below comes from the results files next to this report "
          "(`<benchmark>.json` holds the rows behind each table, the exact command, the "
          "package versions and the machine). Speed targets are ratios to a baseline "
          "measured in the same run.", ""]
    if quick:
        md += ["This is the reduced run (`--quick`): fewer folds and sizes, smaller grids. "
               "Its ours/peer ratios are the baseline of the regression guard "
               "(`python -m benchmarks.check`).", ""]
    if run_info:
        md += ["## Runs", "", h.markdown_table(run_info, ["benchmark", "command", "seconds",
                                                          "status"])]
    if "cuda" not in devices:
        md += ["No CUDA GPU was used for these results (none on the machine that ran them): "
               "the GPU section appears when the suite is run with `--device cuda`.", ""]
    md += ["## Machine and versions", ""]
    for dev in devices:
        md += [f"Device `{dev}`:", "", h.markdown_table(_machine_rows(results, dev))]
    md += [h.markdown_table(_versions_table(results)), ""]
    md += ["## Checks (acceptance lines)", "",
           h.markdown_table(checks, ["benchmark", "check", "ours", "reference", "difference",
                                     "target", "passed", "detail"]) if checks
           else "(no benchmark recorded checks)\n"]
    md += ["## Ratios ours / peer (same run), guarded by `benchmarks.check`", "",
           h.markdown_table(ratios, ["benchmark", "ratio", "value", "better", "ours", "peer"])
           if ratios else "(none recorded)\n"]
    for dev in devices:
        md += [f"## Device: {dev}", ""]
        for stem, payload in results.items():
            if device_of(payload) != dev:
                continue
            md_path = folder / f"{stem}.md"
            body = md_path.read_text() if md_path.exists() else h.markdown_table(
                payload.get("rows", []))
            md += [_demote(body).rstrip(), ""]
            for fig in payload.get("figures", []):
                md += [f"![{fig}]({fig})", ""]
        listed = {f for p in results.values() for f in p.get("figures", [])}
        suffix = "" if dev == "cpu" else f"_{dev}"
        others = [p.name for p in sorted(folder.glob("*.png")) if p.name not in listed
                  and (p.stem.endswith(suffix) if suffix else not p.stem.endswith("_cuda"))]
        if others:
            md += ["### Other figures", ""] + [f"![{f}]({f})\n" for f in others]
    text = "\n".join(md).rstrip() + "\n"
    (folder / "REPORT.md").write_text(text)
    index = {"quick": quick, "command": command, "devices": devices, "runs": run_info or [],
             "checks": checks, "ratios": ratios, "results": sorted(results)}
    (folder / "REPORT.json").write_text(json.dumps(index, indent=2, default=str))
    return text
