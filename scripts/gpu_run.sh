#!/usr/bin/env bash
# The one GPU run: info, the GPU test tier, then the attention benchmark — the benchmark runs even if
# tests fail. Run from the repository root on the device:
#     bash scripts/gpu_run.sh                          # quick benchmark
#     BENCH_ARGS=--full bash scripts/gpu_run.sh        # full sweep
#     BENCH_ARGS="--quick --providers tilefold,sdpa-cudnn,sdpa-flash" bash scripts/gpu_run.sh
# Everything that matters lands directly in $OUT (flat: the device returns at most 8 files, no deeper
# than 2 folders): info.log, gpu_tests.log, bench.log, attention-<gpu>-<date>.json/.png, rc.txt.
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"

python3 -m tilefold info 2>&1 | tee "$OUT/info.log"
info_rc=$?

# only the test folders that exist (pytest runs nothing at all if one path is missing)
paths=()
for p in tests/ops/attention tests/compat; do [ -e "$p" ] && paths+=("$p"); done
python3 -m pytest -m gpu -q -x "${paths[@]}" 2>&1 | tee "$OUT/gpu_tests.log"
test_rc=$?
echo "== gpu tests rc=$test_rc"

# shellcheck disable=SC2086  # BENCH_ARGS is a list of words
python3 -m tilefold bench attention ${BENCH_ARGS:---quick} --out "$OUT" 2>&1 | tee "$OUT/bench.log"
bench_rc=$?
echo "== bench rc=$bench_rc"

# keep a copy where the repository expects results (commit from there after fetching)
mkdir -p benchmarks/results
cp -f "$OUT"/attention-*.json "$OUT"/attention-*.png benchmarks/results/ 2>/dev/null || true

echo "info=$info_rc tests=$test_rc bench=$bench_rc" | tee "$OUT/rc.txt"
ls -la "$OUT"
[ "$test_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
