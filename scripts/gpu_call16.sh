#!/usr/bin/env bash
# 2026-12-03: the 65 GPU-tier tests gpu_call15.sh left unfinished at its time limit (decode first, then varlen).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
mapfile -t T < scripts/gpu_call16.tests
TIER_S=${TIER_S:-190} NPROC=${NPROC:-15} bash scripts/gpu_tier.sh "${T[@]}"
