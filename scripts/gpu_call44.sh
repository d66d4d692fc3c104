#!/usr/bin/env bash
# Device call 44 (2026-12-04, fourth session). Call 43 found the raw launches never taken inside LaunchCache (Triton
# 3.6's launch hooks are an empty HookChain, not None; now checked by launch._no_hook) and the 1k step's host time in
# the backward / autograd engine, not in the launches. (1) where that time goes (scripts/host_profile_bwd.py: loops and
# cProfile); (2) the direct-launch tests (bitwise equal to the kernels' own launch path, now through the raw path) and
# the decode suite (its direct launches take the raw path too); (3) launch_micro again.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== host profile of the backward"
timeout ${HP_S:-100} python3 scripts/host_profile_bwd.py 2>&1 | grep -v Warn | head -120
echo "== tier: direct launches, decode"
TIER_S=${TT_S:-150} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_backward_sm90.py::test_sm90_direct_launch \
  tests/ops/decode 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_direct_decode.log"; rm -f "$OUT/gpu_tier.log"
echo "== launch micro"
timeout ${LM_S:-60} python3 scripts/launch_micro.py 2>&1 | grep -v Warn | tail -25
ls "$OUT"
