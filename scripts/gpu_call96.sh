#!/usr/bin/env bash
# Device call 96 (2026-12-05, fifteenth session), ~4 min: varlen_attention (plain, paged prefill / decode, compat) under
# CUDA graph capture (cu_seqlens no longer read on the host while a graph captures), and the varlen GPU tests after
# that change.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=120 NPROC=8 PYTEST_K="capture" bash scripts/gpu_tier.sh tests/ops/attention/test_compile.py \
  tests/ops/decode/test_kvcache.py 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call96_capture.log"; cp "$OUT/failures.txt" "$OUT/failures_capture.txt" 2>/dev/null
TIER_S=200 NPROC=14 bash scripts/gpu_tier.sh tests/ops/attention/test_varlen.py 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call96_varlen.log"; rm -f "$OUT/gpu_tier.log"
