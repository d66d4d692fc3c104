#!/usr/bin/env bash
# Device call 63 (prepared 2026-12-04 as call 62 by the sixth session, whose device time ran out; run after the
# seventh session's KPAR A/B, call 62): the decode GPU tier on the final host
# code (_kpar_auto_ok / _kpar_allowed without a device argument came after call 61) and one full decode bench with the
# final KPAR policy (call 60 measured the same kernels with the policy off / on).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TIER_S=${TD_S:-150} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"; rm -f "$OUT/gpu_tier.log"
timeout ${BD_S:-110} python3 -m tilefold bench decode --full --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -3
