#!/usr/bin/env bash
# Device call 61 (2026-12-04, sixth session), ~3 minutes: the decode GPU tier after the review of KPAR (new GPU cases:
# odd / 64 / 96 head dims, fp16, windows, softcap, varlen; select_config / NVIDIA gate).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TIER_S=${TD_S:-150} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -8
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"; rm -f "$OUT/gpu_tier.log"
