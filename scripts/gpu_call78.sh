#!/usr/bin/env bash
# Device call 78 (2026-12-04, eighth session), ~3 minutes: the decode GPU tier after BLOCK64_CONFIG took 17-32 rows and the
# one-wave fill condition (test_block64 seqlen_q 8 and not-filling cases).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TIER_S=${TD_S:-170} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -4
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"; rm -f "$OUT/gpu_tier.log"
