#!/usr/bin/env bash
# Device call 88 (2026-12-04, tenth session; never run in it: no device was lent), ~7 minutes. Everything call 87
# was to check (the dropout suite; fp16 / NaN-gate GLA fixes with the GLA / nn GPU tier), plus the tenth session's
# changes: batch x heads over grid axes 1 and 2 (test_grid_rows' GPU test: 4100 x 17 rows through attention fwd /
# bwd, decode with both combines and two row blocks, GLA), custom-op routing of meta / vmap tensors (the GPU compile
# tests), the GLA first-order guard, the compat readings; then the decode quick bench against call 74's numbers (the
# launch is unchanged up to 65535 rows; the decode kernel gained one integer argument: expect +-1%).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=${T1_S:-300} NPROC=15 bash scripts/gpu_tier.sh tests/ops/common tests/compat tests/ops/attention/test_dropout.py \
  tests/ops/attention/test_compile.py tests/ops/gla/test_gla_modes.py tests/ops/gla/test_gla_validation.py tests/nn 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call88.log"; rm -f "$OUT/gpu_tier.log"
TIER_S=${T2_S:-90} NPROC=15 PYTEST_K="decode or fused or split" bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call88_decode.log"; rm -f "$OUT/gpu_tier.log"
timeout 150 python3 -m tilefold bench decode --quick --no-plot --out "$OUT" 2>&1 | tail -30
