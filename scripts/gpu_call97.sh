#!/usr/bin/env bash
# Device call 97 (2026-12-05, fifteenth session), ~4 min: ALiBi (alibi_slopes) on the Triton forward / backward kernels
# -- its GPU tests (2x rule, out / lse / dq / dk / dv, hd 64 / 96 / 128, GQA / MQA, causal with seqlen_q > seqlen_k,
# window + softcap, varlen) -- and the compile / capture / compat GPU tests after the custom ops' new argument.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=280 NPROC=14 bash scripts/gpu_tier.sh tests/ops/attention/test_alibi.py tests/ops/attention/test_compile.py \
  tests/compat 2>&1 | tail -14
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call97.log"; rm -f "$OUT/gpu_tier.log"
