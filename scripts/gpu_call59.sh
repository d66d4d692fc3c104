#!/usr/bin/env bash
# Device call 59 (2026-12-04, sixth session), ~2 minutes: A/B of the KPAR one-wave decode policy against the 2-split
# tiles and cuDNN, fresh tensors per round (scripts/decode_kpar_ab.py).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
timeout ${AB_S:-200} python3 scripts/decode_kpar_ab.py > "$OUT/decode_kpar_ab.jsonl" 2> "$OUT/decode_kpar_ab.err"
echo "rc=$?"; cat "$OUT/decode_kpar_ab.jsonl"; grep -v -i warn "$OUT/decode_kpar_ab.err" | tail -5
