#!/usr/bin/env bash
# Next device call (prepared 2026-12-04 after the session's device time ran out): the attention GPU tests that have
# not run since the Gluon forward took head dim 256 (call 37): every d256 case of the attention suite (test_forward's
# and test_backward's now run the Gluon forward; they passed in call 36 on forward.py's kernel), the dropout and
# torch.compile suites, and the GLA / decode / merge tiers last run on 2026-12-03 (their code has not changed since).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== tier 1: head dim 256, dropout, compile"
TIER_S=300 NPROC=15 PYTEST_K="d256 or hd256 or dropout or compile" bash scripts/gpu_tier.sh tests/ops/attention 2>&1 | tail -10
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_attention.log"
echo "== tier 2: decode, merge, gla, nn, compat, bench"
TIER_S=200 NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode tests/ops/merge tests/ops/gla tests/nn tests/compat tests/bench 2>&1 | tail -10
ls "$OUT"
