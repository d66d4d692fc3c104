#!/usr/bin/env bash
# Device calls 52 and 53 (2026-12-04, fifth session): the forward's dropout mask from a producer partition (MASK_WS) against
# the Philox rounds in the consumers, bitwise mask check and the Gluon forward / dropout tests with it on (default).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 AB_VARIANTS="MASK_WS=0;MASK_WS=1"  # call 53: the producer at 56 registers (consumers 224), swizzled byte ring
echo "== warm"
timeout ${W_S:-100} python3 scripts/dropout_early_bench.py --warm 2>&1 | grep -v Warn | cut -c1-1600 | tail -6
echo "== bench"
timeout ${B_S:-90} python3 scripts/dropout_early_bench.py --out "$OUT/dropout_mask_ws.jsonl" 2>&1 | grep -v Warn | cut -c1-400 | tail -14
echo "== tests"
TIER_S=${T_S:-100} NPROC=15 PYTEST_K="drop or rng" bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py tests/ops/attention/test_dropout.py 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_mask_ws.log"; rm -f "$OUT/gpu_tier.log"
ls "$OUT"
