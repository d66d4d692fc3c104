#!/usr/bin/env bash
# Next device call (prepared 2026-12-03, fourth session, after its device time ran out): what that session
# changed without a GPU run — the Gluon forward's new GPU cases (batch guard, batch isolation, empty blocks,
# window edges, dropout with empty rows, backward on the Gluon out / lse), the 109 + 2 tests call 28 left
# unfinished (scripts/gpu_call29_todo.txt), then the full attention bench (the Gluon forward with the scale
# in the exponent has not been timed beside cuDNN) and the dropout bench. ~9 minutes.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TIER_S=${TIER_S:-260} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py tests/ops/attention/test_dropout.py \
  $(grep -v test_dropout scripts/gpu_call29_todo.txt) 2>&1 | tail -10
echo "== attention bench --full"
timeout ${ATT_S:-235} python3 -m tilefold bench attention --full --no-plot --providers tilefold,sdpa-cudnn,sdpa-flash \
  --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -40
echo "== dropout bench"
timeout 80 python3 -m tilefold bench dropout --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -12
ls "$OUT"
