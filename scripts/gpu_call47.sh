#!/usr/bin/env bash
# Device call 47 (2026-12-04, fourth session; the last of its device time): the decode combine kernel as a
# programmatic dependent launch (DECODE_PDL). (1) the decode suite with it (default), (2) GPU time / GB/s of the
# combine kernel with and without PDL beside the fused fold and cuDNN (scripts/decode_fold_bench.py), (3) bench decode --full.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== decode tier"
TIER_S=${TD_S:-110} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"; rm -f "$OUT/gpu_tier.log"
echo "== fold / pdl bench"
timeout ${FB_S:-120} python3 scripts/decode_fold_bench.py kernel,kernel-nopdl,fused-live,cudnn 2>&1 | grep -v Warn | tail -100
echo "== bench decode --full"
timeout ${BD_S:-100} python3 -m tilefold bench decode --full --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -4
ls "$OUT"
