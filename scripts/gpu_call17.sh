#!/usr/bin/env bash
# Device call (2026-12-03, second session): GPU tier of the backward after EVEN_M and the one-loop default
# (test_backward, test_dkdv_one_loop, test_dropout, test_split_d), then the full attention bench.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
A=tests/ops/attention
TIER_S=${TIER_S:-320} NPROC=15 bash scripts/gpu_tier.sh $A/test_backward.py $A/test_dkdv_one_loop.py $A/test_dropout.py \
  $A/test_split_d.py 2>&1 | tail -12
echo "== attention bench --full"
timeout ${ATT_S:-230} python3 -m tilefold bench attention --full --no-plot --providers tilefold,sdpa-cudnn,sdpa-flash \
  --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -45
ls "$OUT"
