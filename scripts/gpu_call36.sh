#!/usr/bin/env bash
# Device call 36 (2026-12-04): head dim 256 now takes the Gluon backward by default (call 35: its tests passed,
# 1.42-1.46x FA2). The full attention bench on the new default (the committed JSON for issue 2's bars), then
# every head-dim-256 GPU test of the attention suite (test_backward's grid now runs the Gluon kernels there;
# test_split_d is pinned to backward.py's kernel).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== attention bench --full"
timeout ${ATT_S:-270} python3 -m tilefold bench attention --full --no-plot --providers tilefold,sdpa-cudnn,sdpa-flash \
  --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -40
echo "== tier: head dim 256"
TIER_S=${TIER_S:-270} NPROC=15 PYTEST_K="d256 or hd256" bash scripts/gpu_tier.sh tests/ops/attention 2>&1 | tail -10
ls "$OUT"
