#!/usr/bin/env bash
# Device call 67 (2026-12-04, seventh session), ~2 minutes: the full decode bench on the final code (splits sharing out
# the visible keys).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
timeout ${BD_S:-200} python3 -m tilefold bench decode --full --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -3
