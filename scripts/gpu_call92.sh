#!/usr/bin/env bash
# Device call 92 (2026-12-05, twelfth session), ~6 min: the paged GPU tests after the append kernel's fix (call 91: all
# 12 failed to compile: an int32 redefined as int64 in one branch, which the interpreter does not check); the paged tile
# sweep (scripts/decode_paged_sweep.py; call 91: paged 0.70-0.93x contiguous); the quick decode bench with the first
# case warmed up (calls 89-91: the first case slow for every provider).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=120 NPROC=12 PYTEST_K="paged" bash scripts/gpu_tier.sh tests/ops/decode/test_kvcache.py 2>&1 | tail -8
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call92_paged.log"; rm -f "$OUT/gpu_tier.log"
timeout 200 python3 scripts/decode_paged_sweep.py --out "$OUT" 2>&1 | tail -60
timeout 150 python3 -m tilefold bench decode --quick --no-plot --out "$OUT" \
  --providers tilefold,tilefold-paged256,sdpa-cudnn 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -22
