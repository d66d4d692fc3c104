#!/usr/bin/env bash
# Device call 42 (2026-12-04, third session): the Gluon kernels launched directly from cached plans (new default,
# TILEFOLD_SM90_DIRECT_LAUNCH). (1) its GPU tests (bitwise equal to the kernels' own launch path, fwd + bwd, with
# dropout, KV3D, head dims 64/128/256), the torch.compile suite and call 41's 12 unfinished tests; (2) the host time per
# step at 1k tokens with and without the direct launches, and a timed breakdown by layer (scripts/host_breakdown.py);
# (3) every test of the Gluon kernels' files (all of them now take the plans).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== tier X: direct launch, compile, call 41 leftovers"
TIER_S=${TX_S:-150} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_backward_sm90.py::test_sm90_direct_launch \
  tests/ops/attention/test_compile.py $(cat scripts/gpu_call41_todo.txt) 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_X.log"
echo "== host breakdown"
timeout ${HB_S:-130} python3 scripts/host_breakdown.py 2>&1 | tail -30
echo "== tier Y: the Gluon kernels' test files"
TIER_S=${TY_S:-270} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py \
  tests/ops/attention/test_backward_sm90.py 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_Y.log"
ls "$OUT"
