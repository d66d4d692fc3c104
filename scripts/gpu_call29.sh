#!/usr/bin/env bash
# Device call 29 (2026-12-03, fourth session; ~160 s of device time were left): the Gluon forward with the
# softmax scale folded into the exponent (one FFMA per score) and with dropout: its GPU tests and the dropout
# suite, then the forward with dropout (scripts/dropout_fwd_quick.py). (The 109 backward tests call 28 left unfinished are
# not re-run: scripts/gpu_call29_todo.txt.)
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TIER_S=${TIER_S:-85} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py tests/ops/attention/test_dropout.py 2>&1 | tail -8
echo "== dropout forward"
timeout 60 python3 scripts/dropout_fwd_quick.py --out "$OUT/dropout_fwd.jsonl" 2>&1 | cut -c1-160
ls "$OUT"
