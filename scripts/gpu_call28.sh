#!/usr/bin/env bash
# Device call 28 (2026-12-03, fourth session): the Gluon forward as the default on Hopper. GPU tier of
# everything whose forward now runs through it (its own tests, the forward grid, eager / compile paths, the
# compat layer, dropout at p = 0, then the backward on its out / lse), then the full attention bench.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
A=tests/ops/attention
TIER_S=${TIER_S:-300} NPROC=15 bash scripts/gpu_tier.sh $A/test_forward_sm90.py $A/test_forward.py $A/test_eager_path.py \
  $A/test_compile.py tests/compat $A/test_dropout.py $A/test_backward.py 2>&1 | tail -14
echo "== attention bench --full"
timeout ${ATT_S:-235} python3 -m tilefold bench attention --full --no-plot --providers tilefold,sdpa-cudnn,sdpa-flash \
  --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -40
ls "$OUT"
