#!/usr/bin/env bash
# The lead's one device call for the softmax-attention family: info, the GPU test tier (attention,
# compat, merge, split-KV/decode; parallel workers share the one GPU and compile in parallel), then the
# benchmarks: attention (full grid, SDPA anchors), attention quick (with FlexAttention), decode, dropout.
# Flat files under $OUT (the device returns at most 8 files, two folders deep).
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT/full" "$OUT/quick" "$OUT/decode" "$OUT/dropout"
python3 -m tilefold info > "$OUT/info.log" 2>&1
timeout ${TEST_TIMEOUT:-200} python3 -m pytest -m gpu -q -n 8 -p no:cacheprovider -rf \
  tests/ops/attention tests/compat tests/ops/merge tests/ops/decode > "$OUT/gpu_tests.log" 2>&1
echo "== gpu tests rc=$?" | tee -a "$OUT/gpu_tests.log"
tail -15 "$OUT/gpu_tests.log"
B="$OUT/bench.log"
timeout ${BENCH_TIMEOUT:-150} python3 -m tilefold bench attention --full --no-plot \
  --providers tilefold,sdpa-cudnn,sdpa-flash --out "$OUT/full" >> "$B" 2>&1; echo "== bench full rc=$?" | tee -a "$B"
timeout 45 python3 -m tilefold bench attention --quick --no-plot --out "$OUT/quick" >> "$B" 2>&1; echo "== bench quick rc=$?" | tee -a "$B"
timeout 45 python3 -m tilefold bench decode --quick --no-plot --out "$OUT/decode" >> "$B" 2>&1; echo "== bench decode rc=$?" | tee -a "$B"
timeout 40 python3 -m tilefold bench dropout --no-plot --out "$OUT/dropout" >> "$B" 2>&1; echo "== bench dropout rc=$?" | tee -a "$B"
grep -v "^\s*$" "$B" | tail -60
