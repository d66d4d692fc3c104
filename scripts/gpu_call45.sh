#!/usr/bin/env bash
# Device call 45 (2026-12-04, fourth session): decode's fused fold over the live rows only (FOLD_ROWS; up to 16 states
# per round trip) -- (1) the decode suite (both fold modes in the fused-combine tests), (2) scripts/decode_fold_bench.py.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== decode tier"
TIER_S=${TD_S:-90} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -8
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"; rm -f "$OUT/gpu_tier.log"
echo "== fold bench"
timeout ${FB_S:-300} python3 scripts/decode_fold_bench.py 2>&1 | grep -v Warn | tail -100
ls "$OUT"
