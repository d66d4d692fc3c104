#!/usr/bin/env bash
# Device call 81 (2026-12-04, eighth session), ~2 minutes: dropout under CUDA graph capture after tilefold refuses it
# itself (scripts/dropout_graph_check.py), and the dropout GPU tests.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
timeout 120 python3 scripts/dropout_graph_check.py 2>&1 | grep -v Warn | tail -3
TIER_S=${T_S:-100} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_dropout.py 2>&1 | tail -3
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_dropout.log"; rm -f "$OUT/gpu_tier.log"
