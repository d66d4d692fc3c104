#!/usr/bin/env bash
# Device call 72 (2026-12-04, eighth session), ~5 minutes: dropout's Philox rounds right after the warpgroup's products
# (forward_sm90.EARLY_WORDS) against the shipped placement, two rounds, bitwise output check; then the Gluon forward /
# dropout GPU tests with EARLY_WORDS on (and the shipped placement, after philox.dropout_keep_gl was split in two).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 AB_VARIANTS="EARLY_WORDS=0;EARLY_WORDS=1"
echo "== warm"
timeout ${W_S:-100} python3 scripts/dropout_early_bench.py --warm 2>&1 | grep -v Warn | cut -c1-1600 | tail -6
for r in 1 2; do
  echo "== bench round $r"
  timeout ${B_S:-90} python3 scripts/dropout_early_bench.py --out "$OUT/dropout_early_words.jsonl" 2>&1 | grep -v Warn | cut -c1-400 | tail -10
done
echo "== tests, EARLY_WORDS=1"
TILEFOLD_FWD_SM90_EARLY_WORDS=1 TIER_S=${T_S:-100} NPROC=15 PYTEST_K="drop or rng" bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py tests/ops/attention/test_dropout.py 2>&1 | tail -4
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_early_words.log"; rm -f "$OUT/gpu_tier.log"
echo "== tests, shipped"
TIER_S=${T_S:-100} NPROC=15 PYTEST_K="drop or rng" bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py tests/ops/attention/test_dropout.py 2>&1 | tail -4
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_dropout.log"; rm -f "$OUT/gpu_tier.log"
