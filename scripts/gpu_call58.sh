#!/usr/bin/env bash
# Device call 58 (2026-12-04, sixth session), ~6 minutes: the KPAR one-wave policy (B=16-like decode: one unsplit
# keys-in-parallel program per (batch, key head)): (1) the decode GPU tier (default modes, test_kpar.py included);
# (2) python -m tilefold bench decode --full, twice (run-to-run spread beside the ratios).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== decode tier"
TIER_S=${TD_S:-110} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"; rm -f "$OUT/gpu_tier.log"
for r in 1 2; do
  echo "== bench decode --full ($r)"
  mkdir -p "$OUT/run$r"
  timeout ${BD_S:-110} python3 -m tilefold bench decode --full --no-plot --out "$OUT/run$r" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -3
done
ls -R "$OUT"
