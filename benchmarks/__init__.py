"""The sksvd benchmark suite: ``python -m benchmarks.run [--quick] [--device cpu|cuda]``.

Each ``bench_<name>.py`` module has ``main(quick=False, device="cpu")`` and
writes ``results/<name>.json`` and ``results/<name>.md`` through the one
harness (:mod:`benchmarks._harness`); :mod:`benchmarks.run` runs them all and
gathers them in ``results/REPORT.md``; :mod:`benchmarks.check` guards the
recorded ours/peer ratios against regressions.
"""
