#!/usr/bin/env bash
# Device call 85 (2026-12-04, ninth session; at commit 21d8892, where KPAR_INTERLEAVE exists), ~5 minutes: KPAR with interleaved warps -- the KPAR GPU tests (both
# layouts), then the A/B sweep (scripts/decode_kpar_stages.py il).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=${T1_S:-120} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode/test_kpar.py 2>&1 | tail -8
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_kpar.log"; rm -f "$OUT/gpu_tier.log"
timeout ${SW_S:-300} python3 scripts/decode_kpar_stages.py il > "$OUT/kpar-il.jsonl" 2> "$OUT/kpar-il.err"
echo "sweep rc=$? lines=$(wc -l < "$OUT/kpar-il.jsonl")"; grep -v -i warn "$OUT/kpar-il.err" | tail -3
