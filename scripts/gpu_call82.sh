#!/usr/bin/env bash
# Device call 82 (2026-12-04, ninth session; at commit 399c559), ~9 minutes: the balanced split-KV kernel's GPU tests, its sweep against the
# shipped plan and cuDNN (scripts/decode_balanced_sweep.py), the decode GPU tier with TILEFOLD_DECODE_BALANCED=1.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=${T1_S:-110} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode/test_balanced.py 2>&1 | tail -8
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_balanced.log"; rm -f "$OUT/gpu_tier.log"
timeout ${SW_S:-280} python3 scripts/decode_balanced_sweep.py > "$OUT/balanced-sweep.jsonl" 2> "$OUT/balanced-sweep.err"
echo "sweep rc=$? lines=$(wc -l < "$OUT/balanced-sweep.jsonl")"; tail -3 "$OUT/balanced-sweep.err"
TILEFOLD_DECODE_BALANCED=1 TIER_S=${T2_S:-150} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode_bal1.log"; rm -f "$OUT/gpu_tier.log"
