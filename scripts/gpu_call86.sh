#!/usr/bin/env bash
# Device call 86 (2026-12-04, ninth session), ~5 minutes: GPU tests of the API-review fixes -- the merge kernel's flat
# grid (batch x heads > 65535), the dropout scale 1 / (1 - threshold / 65536) in every kernel (dropout suite, the Gluon
# forward / backward dropout cases), split-KV, validation and compat suites.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=${T1_S:-300} NPROC=15 bash scripts/gpu_tier.sh tests/ops/merge tests/ops/attention/test_dropout.py \
  tests/ops/decode/test_splitkv.py tests/ops/attention/test_validation.py tests/compat 2>&1 | tail -10
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_review.log"
PYTEST_K=dropout TIER_S=${T2_S:-170} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py \
  tests/ops/attention/test_backward_sm90.py 2>&1 | tail -8
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_sm90_dropout.log"; rm -f "$OUT/gpu_tier.log"
