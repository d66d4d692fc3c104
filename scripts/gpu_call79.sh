#!/usr/bin/env bash
# Device call 79 (2026-12-04, eighth session), ~1 minute: test_block64's GPU cases after their expectation followed the
# chosen split count (call 78: the windowed case's model count fills one wave, so the plan rightly took BLOCK64_CONFIG).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TIER_S=${TD_S:-100} NPROC=6 bash scripts/gpu_tier.sh tests/ops/decode/test_block64.py 2>&1 | tail -4
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_block64.log"; rm -f "$OUT/gpu_tier.log"
