#!/usr/bin/env bash
# Device call 54 (2026-12-04, fifth session, last): the final forward code (MASK_WS opt-in, the non-producer path
# restructured) — every test of the Gluon forward file (with the new producer test) and the dropout suite.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TIER_S=${T_S:-200} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py tests/ops/attention/test_dropout.py 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_final.log"; rm -f "$OUT/gpu_tier.log"
