#!/usr/bin/env bash
# Device call 46 (2026-12-04, fourth session; the session's last): (1) the decode suite on the final code (live-row fold
# default, raw launches), (2) python -m tilefold bench decode --full (the JSON), (3) every test of the two Gluon
# files with the raw launches active (call 43 ran them before the HookChain fix, i.e. through CompiledKernel.run).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== decode tier"
TIER_S=${TD_S:-110} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"; rm -f "$OUT/gpu_tier.log"
echo "== bench decode --full"
timeout ${BD_S:-170} python3 -m tilefold bench decode --full --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -4
echo "== Gluon files"
TIER_S=${TY_S:-250} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py \
  tests/ops/attention/test_backward_sm90.py 2>&1 | tail -10
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_sm90_files.log"; rm -f "$OUT/gpu_tier.log"
ls "$OUT"
