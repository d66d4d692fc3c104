#!/usr/bin/env bash
# Device call 51 (2026-12-04, fifth session): the Triton-kernel backward cases whose preprocess now goes through a
# LaunchCache (varlen, fp32, softcap; 15 fp32 cases and the varlen file were cut by call 48's limit) and the dropout
# suite (RNG arguments unspecialized).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== backward: varlen, fp32, softcap"
TIER_S=${TB_S:-270} NPROC=15 PYTEST_K="test_varlen or fp32 or cap" bash scripts/gpu_tier.sh tests/ops/attention/test_backward.py \
  tests/ops/attention/test_varlen.py 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_bwd.log"; rm -f "$OUT/gpu_tier.log"
ls "$OUT"
echo "== GLA leftovers (4 of call 50's 6 unfinished at its 110 s)"
TIER_S=${TG_S:-220} NPROC=4 bash scripts/gpu_tier.sh $(grep "tests/ops/gla" scripts/gpu_call41_todo.txt | grep -v "fused_chunk-B1-T130-H2-K256-V256-torch.bfloat16\|fused_chunk-B1-T130-H2-K256-V256-torch.float32") 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_gla.log"; rm -f "$OUT/gpu_tier.log"
ls "$OUT"
