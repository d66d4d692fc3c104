#!/usr/bin/env bash
# 2026-12-03, last device call: the GPU tier of everything the eager (non-custom-op) attention path touches,
# on the final code -- attention (forward, backward, varlen, dropout, compile, eager path, validation,
# order, split-D), decode / split-KV, merge, compat, bench. GLA is untouched since its tier run.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
TIER_S=${TIER_S:-510} NPROC=${NPROC:-15} bash scripts/gpu_tier.sh tests/ops/attention tests/ops/decode \
  tests/ops/merge tests/compat tests/bench tests/test_main.py
