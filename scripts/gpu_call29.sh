#!/usr/bin/env bash
# Device call 29 (2026-12-03, fourth session): the Gluon forward with the softmax scale folded into the exponent
# (one FFMA per score) and with dropout: its GPU tests, the dropout suite, the GPU tests call 28 left unfinished
# (scripts/gpu_call29_todo.txt: test_backward), then bench dropout and bench attention --quick.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TIER_S=${TIER_S:-180} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py tests/ops/attention/test_dropout.py $(grep -v test_dropout scripts/gpu_call29_todo.txt) 2>&1 | tail -8
echo "== attention bench --quick"
timeout 100 python3 -m tilefold bench attention --quick --no-plot --providers tilefold,sdpa-cudnn,sdpa-flash \
  --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -12
echo "== dropout bench"
timeout 90 python3 -m tilefold bench dropout --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -14
ls "$OUT"
