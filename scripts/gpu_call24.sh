#!/usr/bin/env bash
# Device call 24 (2026-12-03, third session), ~3 minutes: the decode GPU tests on the final split / tile policy
# (default, then descriptors forced), and python -m tilefold bench decode --full.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
timeout 100 python3 -m pytest -m gpu -v -n 8 -p no:cacheprovider -W ignore -rfE --tb=short tests/ops/decode \
  > "$OUT/gpu_tier_decode.log" 2>&1; echo "rc=$? passed=$(grep -c ' PASSED ' "$OUT/gpu_tier_decode.log")"; grep -E "FAILED|ERROR|passed|failed" "$OUT/gpu_tier_decode.log" | tail -8 | cut -c1-300
TILEFOLD_DECODE_TMA=1 timeout 80 python3 -m pytest -m gpu -q -n 8 -p no:cacheprovider -W ignore -rfE --tb=short tests/ops/decode \
  > "$OUT/gpu_tier_decode_tma.log" 2>&1; echo "rc=$?"; tail -3 "$OUT/gpu_tier_decode_tma.log" | cut -c1-300
timeout 150 python3 -m tilefold bench decode --full --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -4
