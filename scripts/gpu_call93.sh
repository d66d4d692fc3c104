#!/usr/bin/env bash
# Device call 93 (2026-12-05, thirteenth session), ~8 min: GPU tests of the paged varlen path
# (varlen_attention(block_table=)) and of cache_leftpad (both kernels gained a pointer argument and HAS_LEFTPAD;
# the interpreter does not type-check, so the forward kernel's varlen / split / kvcache GPU tests run too); the quick
# decode bench with the paged provider under the twelfth session's paged tile policy (unmeasured through the bench).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=200 NPROC=14 bash scripts/gpu_tier.sh tests/ops/decode/test_paged_varlen.py tests/ops/decode/test_kvcache.py \
  tests/ops/decode/test_splitkv.py tests/ops/attention/test_varlen.py 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call93.log"; rm -f "$OUT/gpu_tier.log"
timeout 120 python3 scripts/paged_prefill_bench.py --out "$OUT" 2>&1 | tail -14
timeout 150 python3 -m tilefold bench decode --quick --no-plot --out "$OUT" \
  --providers tilefold,tilefold-paged256,sdpa-cudnn,copy 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -30
# the host time of a B=1 decode call after this session's validation fast paths (call 91 after its trim: 63 / 66 us)
timeout 70 python3 scripts/kvcache_small_probe.py --out "$OUT" 2>&1 | grep -v "^ " | tail -12
