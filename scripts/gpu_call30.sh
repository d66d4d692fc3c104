#!/usr/bin/env bash
# Device call 30 (2026-12-04): what the fourth session of 12-03 changed without a GPU run — the Gluon
# forward's new GPU cases (batch guard, batch isolation, empty blocks, window edges, dropout with empty rows,
# backward on the Gluon out / lse), the 109 + 2 tests call 28 left unfinished (scripts/gpu_call29_todo.txt),
# then the dropout bench (the Gluon forward's dropout into a committed JSON). ~6 minutes.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TIER_S=${TIER_S:-300} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py tests/ops/attention/test_dropout.py \
  $(grep -v test_dropout scripts/gpu_call29_todo.txt) 2>&1 | tail -10
echo "== dropout bench"
timeout 100 python3 -m tilefold bench dropout --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -12
ls "$OUT"
