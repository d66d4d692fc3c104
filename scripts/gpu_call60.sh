#!/usr/bin/env bash
# Device call 60 (2026-12-04, sixth session), ~3 minutes: the official decode bench (python -m tilefold bench decode
# --full) with the KPAR one-wave policy off (TILEFOLD_DECODE_KPAR=0) and on (auto), alternating, two rounds each: call
# 58's bench had KPAR ~2% below call 59's A/B at B=16, so decide on the bench's own method, same process conditions.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
for r in 1 2; do
  for m in 0 auto; do
    echo "== bench decode --full, KPAR=$m ($r)"
    mkdir -p "$OUT/kpar-$m-$r"
    TILEFOLD_DECODE_KPAR=$m timeout ${BD_S:-100} python3 -m tilefold bench decode --full --no-plot --out "$OUT/kpar-$m-$r" 2>&1 \
      | tr '\r' '\n' | grep -v "it/s\]$" | tail -2
  done
done
