#!/usr/bin/env bash
# Device call (session 3): the GPU test tier of everything but GLA (attention forward/backward/varlen/
# dropout/compile, merge, decode/split-KV), one xdist worker per core; results in $OUT/gpu_tier.log,
# failures in $OUT/failures.txt as they happen.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
TIER_S=${TIER_S:-555} bash scripts/gpu_tier.sh tests/ops/attention tests/ops/merge tests/ops/decode tests/compat tests/bench tests/test_main.py
grep -c PASSED "$OUT/gpu_tier.log"
ls -la "$OUT"
