#!/usr/bin/env bash
# Device call 87 (2026-12-04, ninth session), ~2 minutes: the two dropout RNG cases call 86 failed on its own test's CUDA
# initialization (default_generators read before CUDA was initialized in that worker), and the dropout suite again.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=${T1_S:-200} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_dropout.py 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_dropout.log"; rm -f "$OUT/gpu_tier.log"
