#!/usr/bin/env bash
# Device call 87 (2026-12-04, ninth session), ~4 minutes: the dropout suite again (call 86's two RNG cases failed on
# their own test's CUDA initialization), and the GLA fixes of the second API review -- fp16 through the chunk modes
# (the re-referenced dots overflowed fp16: NaN outputs) and NaN gates propagating on the GPU -- with the GLA / nn GPU tier.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=${T1_S:-270} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_dropout.py tests/ops/gla/test_gla_modes.py \
  tests/ops/gla/test_gla_validation.py tests/nn 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call87.log"; rm -f "$OUT/gpu_tier.log"
