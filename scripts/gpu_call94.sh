#!/usr/bin/env bash
# Device call 94 (2026-12-05, fourteenth session), ~6 min: the forward kernel's paged path through descriptors over
# the pool (PAGED + USE_TMA: one table entry and one TMA box per key tile where pages hold whole tiles and a pool's
# pages are consecutive rows) -- GPU tests (paged varlen with contiguous / strided V pools, the rows no sequence owns
# NaN / Inf; the kvcache paged cases), the paged prefill bench against call 93's pointer path (0.55-0.68x contiguous),
# and the quick decode bench with the paged provider's pool now cached by tensor (call 93's max_err 0.097 at
# seqlen_q 1 was the bench reading a stale pool).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=170 NPROC=14 PYTEST_K="paged or leftpad" bash scripts/gpu_tier.sh tests/ops/decode/test_paged_varlen.py \
  tests/ops/decode/test_kvcache.py 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call94.log"; rm -f "$OUT/gpu_tier.log"
timeout 150 python3 scripts/paged_prefill_bench.py --out "$OUT" 2>&1 | tail -16
timeout 150 python3 -m tilefold bench decode --quick --no-plot --out "$OUT" \
  --providers tilefold,tilefold-paged16,tilefold-paged256,sdpa-cudnn,copy 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -30
