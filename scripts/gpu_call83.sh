#!/usr/bin/env bash
# Device call 83 (2026-12-04, ninth session; at commit b0a4530), ~4 minutes: the balanced kernel's GPU tests (ALIGN_HEADS added), its sweep
# with the key-head-aligned cut (scripts/decode_balanced_sweep.py).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=${T1_S:-110} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode/test_balanced.py 2>&1 | tail -8
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_balanced.log"; rm -f "$OUT/gpu_tier.log"
timeout ${SW_S:-300} python3 scripts/decode_balanced_sweep.py > "$OUT/balanced-sweep.jsonl" 2> "$OUT/balanced-sweep.err"
echo "sweep rc=$? lines=$(wc -l < "$OUT/balanced-sweep.jsonl")"; tail -3 "$OUT/balanced-sweep.err"
