#!/usr/bin/env bash
# Device call 22 (2026-12-03, third session), <= 9 minutes:
#  1. python -m tilefold bench decode --full (new decode tiles / splits, plan cache, direct launches) beside
#     cuDNN, FA2 and copy;
#  2. scripts/host_profile.py (host time per call, attention and decode, after the direct launches);
#  3. GPU tier: decode, the launch-cache tests, forward, dropout, split-D, one-loop dK/dV, eager path.
# <= 8 files under $OUT (the host profile's text files go in one tarball).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.max.sm,memory.used --format=csv,noheader
echo "== decode bench"
timeout ${DEC_S:-200} python3 -m tilefold bench decode --full --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -60
echo "== host profile"
mkdir -p /tmp/hp
OUT=/tmp/hp HOST_PROFILE_NO_KERNELS=1 timeout ${HP_S:-100} python3 scripts/host_profile.py 2>&1 | grep -v -i warn | tail -20
tar czf "$OUT/host_profile.tgz" -C /tmp/hp .
echo "== gpu tier"
A=tests/ops/attention
TIER_S=${TIER_S:-230} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode $A/test_launch_cache.py $A/test_forward.py \
  $A/test_dropout.py $A/test_split_d.py $A/test_dkdv_one_loop.py $A/test_eager_path.py 2>&1 | tail -12
ls "$OUT"
