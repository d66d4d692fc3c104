#!/usr/bin/env bash
# Device call 38 (2026-12-04): the full attention bench with the Gluon forward at head dim 256 (call 37: all 115
# forward_sm90 GPU tests passed; no ping-pong at hd256, from its bench), then call 37's 12 unfinished tests.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== attention bench --full"
timeout ${ATT_S:-150} python3 -m tilefold bench attention --full --no-plot --providers tilefold,sdpa-cudnn,sdpa-flash \
  --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -40
echo "== call 37 leftovers"
TIER_S=${TIER_S:-200} NPROC=12 bash scripts/gpu_tier.sh $(cat scripts/gpu_call37_todo.txt) 2>&1 | tail -10
ls "$OUT"
