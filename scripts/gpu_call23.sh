#!/usr/bin/env bash
# Device call 23 (2026-12-03, third session), ~3 minutes: small-K/V decode split counts and tiles
# (scripts/decode_tune.py small), after call 22's full bench showed B=1 8k / 32k below cuDNN.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
timeout ${TUNE_S:-200} python3 scripts/decode_tune.py small > "$OUT/decode_tune3.jsonl" 2> "$OUT/decode_tune3.err"
echo "rc=$?"; cut -c1-300 "$OUT/decode_tune3.jsonl"; grep -v -i warn "$OUT/decode_tune3.err" | tail -5
