#!/usr/bin/env bash
# Device call 34 (2026-12-04): dropout in the Gluon backward kernels — their dropout tests and the dropout
# suite first, then the dropout bench, then the rest of the backward_sm90 tests (the kernels gained
# arguments and constexpr-gated dropout code).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== tier 1: dropout"
TIER_S=120 NPROC=15 PYTEST_K="dropout or outside or mutate" bash scripts/gpu_tier.sh tests/ops/attention/test_backward_sm90.py \
  tests/ops/attention/test_dropout.py 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_dropout.log"
echo "== dropout bench"
timeout 60 python3 -m tilefold bench dropout --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -12
echo "== tier 2: the rest of backward_sm90"
TIER_S=110 NPROC=15 PYTEST_K="not dropout and not outside and not mutate" bash scripts/gpu_tier.sh \
  tests/ops/attention/test_backward_sm90.py 2>&1 | tail -8
ls "$OUT"
