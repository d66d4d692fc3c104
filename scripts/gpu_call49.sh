#!/usr/bin/env bash
# Device call 49 (2026-12-04, fifth session): where the forward's dropout Philox runs (scripts/dropout_early_bench.py),
# plus the Gluon forward / dropout tests on the new code.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== warm"
timeout ${W_S:-150} python3 scripts/dropout_early_bench.py --warm 2>&1 | grep -v Warn | cut -c1-1600 | tail -12
echo "== bench"
timeout ${B_S:-120} python3 scripts/dropout_early_bench.py --out "$OUT/dropout_early.jsonl" 2>&1 | grep -v Warn | cut -c1-1600 | tail -30
if [ -n "$NO_TESTS" ]; then exit 0; fi
echo "== tests"
TIER_S=${T_S:-150} NPROC=15 PYTEST_K="drop or rng" bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py tests/ops/attention/test_dropout.py tests/ops/attention/test_backward_sm90.py 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_fwd_dropout.log"; rm -f "$OUT/gpu_tier.log"
ls "$OUT"
