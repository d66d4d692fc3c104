#!/usr/bin/env bash
# The lead's one device call for the softmax-attention family: info, the GPU test tier (attention,
# compat, merge, split-KV/decode; parallel workers share the one GPU and compile in parallel), then
# the attention benchmark (full grid, SDPA anchors), the quick one with FlexAttention, and decode.
# Flat files under $OUT (the device returns at most 8 files, two folders deep).
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT/full" "$OUT/quick" "$OUT/decode"
python3 -m tilefold info > "$OUT/info.log" 2>&1
timeout ${TEST_TIMEOUT:-250} python3 -m pytest -m gpu -q -n 8 -p no:cacheprovider -rf \
  tests/ops/attention tests/compat tests/ops/merge tests/ops/decode > "$OUT/gpu_tests.log" 2>&1
echo "== gpu tests rc=$?" | tee -a "$OUT/gpu_tests.log"
tail -15 "$OUT/gpu_tests.log"
timeout ${BENCH_TIMEOUT:-190} python3 -m tilefold bench attention --full --no-plot \
  --providers tilefold,sdpa-cudnn,sdpa-flash --out "$OUT/full" > "$OUT/bench_full.log" 2>&1
echo "== bench full rc=$?"; tail -45 "$OUT/bench_full.log"
timeout 60 python3 -m tilefold bench attention --quick --no-plot --out "$OUT/quick" > "$OUT/bench_quick.log" 2>&1
echo "== bench quick rc=$?"; tail -12 "$OUT/bench_quick.log"
timeout 60 python3 -m tilefold bench decode --quick --no-plot --out "$OUT/decode" > "$OUT/bench_decode.log" 2>&1
echo "== bench decode rc=$?"; tail -20 "$OUT/bench_decode.log"
