#!/usr/bin/env bash
# Device call 51 (2026-12-04, fifth session): the Triton-kernel backward cases whose preprocess now goes through a
# LaunchCache (varlen, fp32, softcap; 15 fp32 cases and the varlen file were cut by call 48's limit) and the dropout
# suite (RNG arguments unspecialized).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== backward: varlen, fp32, softcap"
TIER_S=${TB_S:-300} NPROC=15 PYTEST_K="test_varlen or fp32 or cap" bash scripts/gpu_tier.sh tests/ops/attention/test_backward.py \
  tests/ops/attention/test_varlen.py 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_bwd.log"; rm -f "$OUT/gpu_tier.log"
ls "$OUT"
