#!/usr/bin/env bash
# Device call (session 4, first): the attention half of the GPU tier on the final code -- forward,
# backward (hd256 now on the 32x128 split-D dK/dV tile) and validation; the rest of the tier is
# scripts/gpu_call11.sh. Logs under $OUT.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
git log --oneline -1 2>/dev/null; git status --short 2>/dev/null | head -5
A=tests/ops/attention
TIER_S=${TIER_S:-555} NPROC=${NPROC:-15} bash scripts/gpu_tier.sh $A/test_forward.py $A/test_backward.py $A/test_validation.py
