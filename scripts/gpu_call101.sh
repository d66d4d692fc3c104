#!/usr/bin/env bash
# Device call 101 (2026-12-05, sixteenth session), ~6 min: call 100's GPU tests again with 5 workers -- on the H100 (80 GB)
# 14 workers ran out of memory in 32 tests (the decode suite's fp64 references at up to 1M keys: one worker held 39 GB).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=480 NPROC=5 bash scripts/gpu_tier.sh tests/ops/attention/test_alibi.py tests/ops/decode 2>&1 | tail -14
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call101.log"; rm -f "$OUT/gpu_tier.log"
