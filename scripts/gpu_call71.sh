#!/usr/bin/env bash
# Device call 71 (2026-12-04, eighth session), ~5 minutes: after the seqlen_q 16 decode policy (BLOCK64_CONFIG, one
# program per SM): the decode GPU tier (with tests/ops/decode/test_block64.py), then the full decode bench.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TIER_S=${TD_S:-190} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"; rm -f "$OUT/gpu_tier.log"
timeout ${BD_S:-220} python3 -m tilefold bench decode --full --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -3
