#!/usr/bin/env bash
# Device call 84 (2026-12-04, ninth session), ~4 minutes: KPAR tiles by pipeline depth (scripts/decode_kpar_stages.py).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
timeout ${SW_S:-300} python3 scripts/decode_kpar_stages.py > "$OUT/kpar-stages.jsonl" 2> "$OUT/kpar-stages.err"
echo "sweep rc=$? lines=$(wc -l < "$OUT/kpar-stages.jsonl")"; grep -v -i warn "$OUT/kpar-stages.err" | tail -3
