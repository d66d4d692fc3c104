#!/usr/bin/env bash
# Device call (2026-12-03, second session): the GPU tests gpu_call17.sh left unfinished (27 of test_backward,
# listed in gpu_call18.tests; test_dkdv_one_loop incl. the new EVEN_M GPU test; test_dropout; test_split_d),
# then the dropout bench (its backward takes EVEN_M and, causal, the one loop).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
A=tests/ops/attention
TIER_S=${TIER_S:-300} NPROC=15 bash scripts/gpu_tier.sh $(cat scripts/gpu_call18.tests) $A/test_dkdv_one_loop.py \
  $A/test_dropout.py $A/test_split_d.py 2>&1 | tail -12
echo "== dropout bench"
timeout ${DROP_S:-120} python3 -m tilefold bench dropout --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -20
ls "$OUT"
