#!/usr/bin/env bash
# Verification call (was gpu_call49.sh), for the next session (prepared 2026-12-04, fourth session, whose call 48, its last 200 s, ran the decode suite and 23 fp32 backward cases, see results/gpu-tier-2026-12-04-call48-*). What has not run on the GPU on
# the final code: (1) decode's test_options_and_strides_change_between_calls (cut by calls 45/47's tier limits; passed in
# call 46, its path has no PDL), the whole decode suite again after the review fixes (PDL gate, plan key); (2) the five
# fp32 GLA tests that hit calls 41/42's limits (GLA code unchanged since 2026-12-03); (3) the varlen / Triton-kernel
# backward cases, whose preprocess now goes through a LaunchCache.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== decode"
TIER_S=${TD_S:-160} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"
echo "== backward: varlen, fp32, softcap (Triton kernels, cached preprocess launch)"
TIER_S=${TB_S:-200} NPROC=15 PYTEST_K="test_varlen or fp32 or cap" bash scripts/gpu_tier.sh tests/ops/attention/test_backward.py \
  tests/ops/attention/test_varlen.py 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_bwd.log"
echo "== GLA fp32 leftovers"
TIER_S=${TG_S:-200} NPROC=5 bash scripts/gpu_tier.sh $(grep "tests/ops/gla" scripts/gpu_call41_todo.txt) 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_gla.log"; rm -f "$OUT/gpu_tier.log"
ls "$OUT"
