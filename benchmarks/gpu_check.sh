#!/usr/bin/env bash
# The GPU check, in one run of about 9 minutes at most: the GPU's name, the test suite with
# device="auto" resolving to CUDA, benchmarks/bench_gpu.py at full size, then the quality of
# batch_size="auto" on the device (benchmarks/bench_auto_batch.py --quick, MovieLens u1).
#
#   bash benchmarks/gpu_check.sh            (from the repository root)
#
# Writes at most 6 files into $OUT (default /tmp/gpu_check_out), none in a sub-folder:
#   nvidia_smi.txt, tests_cuda.log, bench_gpu.log, gpu_cuda.json, gpu_cuda.md,
#   bench_auto_batch.log, auto_batch_quick_cuda.json, auto_batch_quick_cuda.md, summary.txt
# MovieLens: set SKSVD_DATA_HOME to a folder holding ml-100k/ (and ml-latest-small/); by
# default .gpudata/ in the repository when it exists. Without it the tests that need the
# data skip. Tests needing packages absent there (implicit, surprise, dask) skip too.
# Time limits (seconds) can be changed: GPU_CHECK_TEST_S (default 280), GPU_CHECK_BENCH_S
# (default 190), GPU_CHECK_AUTO_S (default 60); GPU_CHECK_SKIP_TESTS=1, GPU_CHECK_SKIP_BENCH=1
# or GPU_CHECK_SKIP_AUTO=1 skip a part.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
if [ -z "${SKSVD_DATA_HOME:-}" ] && [ -d .gpudata ]; then
    export SKSVD_DATA_HOME="$PWD/.gpudata"
fi
TEST_S="${GPU_CHECK_TEST_S:-280}"
BENCH_S="${GPU_CHECK_BENCH_S:-190}"
SUMMARY="$OUT/summary.txt"
t0=$(date +%s)

{
    echo "gpu_check: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "SKSVD_DATA_HOME=${SKSVD_DATA_HOME:-<unset>}"
    "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" 2>&1
} > "$SUMMARY"
nvidia-smi -L > "$OUT/nvidia_smi.txt" 2>&1
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv \
    >> "$OUT/nvidia_smi.txt" 2>&1
cat "$OUT/nvidia_smi.txt" >> "$SUMMARY"

tests_rc=skipped
if [ "${GPU_CHECK_SKIP_TESTS:-0}" != 1 ]; then
    t=$(date +%s)
    SKSVD_DEVICE=cuda timeout -k 10 "$TEST_S" "$PY" -m pytest -q -rfEs -p no:cacheprovider \
        tests > "$OUT/tests_cuda.log" 2>&1
    tests_rc=$?
    echo "tests: rc=$tests_rc (124 = out of time) in $(( $(date +%s) - t )) s" >> "$SUMMARY"
    tail -n 5 "$OUT/tests_cuda.log" >> "$SUMMARY"
fi

bench_rc=skipped
if [ "${GPU_CHECK_SKIP_BENCH:-0}" != 1 ]; then
    t=$(date +%s)
    rm -f benchmarks/results/gpu_cuda.json benchmarks/results/gpu_cuda.md
    timeout -k 10 "$BENCH_S" "$PY" -m benchmarks.bench_gpu --device cuda \
        > "$OUT/bench_gpu.log" 2>&1
    bench_rc=$?
    echo "bench_gpu: rc=$bench_rc (124 = out of time) in $(( $(date +%s) - t )) s" >> "$SUMMARY"
    for f in benchmarks/results/gpu_cuda.json benchmarks/results/gpu_cuda.md; do
        [ -f "$f" ] && cp "$f" "$OUT/"
    done
    tail -n 3 "$OUT/bench_gpu.log" >> "$SUMMARY"
fi
auto_rc=skipped
if [ "${GPU_CHECK_SKIP_AUTO:-0}" != 1 ] && [ -n "${SKSVD_DATA_HOME:-}" ]; then
    t=$(date +%s)
    rm -f benchmarks/results/auto_batch_quick_cuda.json benchmarks/results/auto_batch_quick_cuda.md
    timeout -k 10 "${GPU_CHECK_AUTO_S:-60}" "$PY" -m benchmarks.bench_auto_batch --quick \
        --device cuda > "$OUT/bench_auto_batch.log" 2>&1
    auto_rc=$?
    echo "bench_auto_batch: rc=$auto_rc (124 = out of time) in $(( $(date +%s) - t )) s" >> "$SUMMARY"
    for f in benchmarks/results/auto_batch_quick_cuda.json benchmarks/results/auto_batch_quick_cuda.md; do
        [ -f "$f" ] && cp "$f" "$OUT/"
    done
fi
echo "total $(( $(date +%s) - t0 )) s; tests rc=$tests_rc, bench rc=$bench_rc, auto batch rc=$auto_rc" >> "$SUMMARY"
cat "$SUMMARY"
[ "$tests_rc" = 0 ] || [ "$tests_rc" = skipped ] || exit 1
[ "$bench_rc" = 0 ] || [ "$bench_rc" = skipped ] || exit 1
