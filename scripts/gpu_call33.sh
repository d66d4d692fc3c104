#!/usr/bin/env bash
# Device call 33 (2026-12-04): the full attention bench on the Gluon forward + Gluon backward defaults (the
# committed JSON for issue 2's bars), the dropout bench, and the GPU tests that reach the backward through
# the custom ops / eager path / nn modules on the new defaults, plus call 32's two unfinished leftovers.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== attention bench --full"
timeout ${ATT_S:-240} python3 -m tilefold bench attention --full --no-plot --providers tilefold,sdpa-cudnn,sdpa-flash \
  --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -40
echo "== dropout bench"
timeout 90 python3 -m tilefold bench dropout --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -12
echo "== tier"
TIER_S=${TIER_S:-120} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_compile.py tests/ops/attention/test_eager_path.py tests/ops/attention/test_dkdv_one_loop.py \
  $(cat scripts/gpu_call33_todo.txt) 2>&1 | tail -10
ls "$OUT"
