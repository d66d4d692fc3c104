#!/usr/bin/env bash
# Device call 66 (2026-12-04, seventh session), ~5 minutes: after the splits began sharing out the visible keys (decode
# kernel and the attention forward's split path): the decode GPU tier, then the attention forward / eager-path GPU
# cases that split or window.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TIER_S=${TD_S:-170} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"; rm -f "$OUT/gpu_tier.log"
TIER_S=${TA_S:-240} NPROC=15 PYTEST_K="win or split" bash scripts/gpu_tier.sh tests/ops/attention/test_forward.py tests/ops/attention/test_eager_path.py \
  tests/ops/attention/test_varlen.py 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_attention_split.log"; rm -f "$OUT/gpu_tier.log"
