#!/usr/bin/env bash
# Next device call (carry .whl: fla-core 0.6.0), ~5 minutes on a fresh H200:
#  1. what the 2026-12-02 tier calls left unrun on the final code: test_compile.py, one varlen hd256 fp32
#     case, chunk GLA masked-gate packing (bf16, fp32);
#  2. fla's configs compiled over 14 shards, fla tuned alone, then python -m tilefold bench gla (both shapes)
#     beside fla and SDPA-flash -- the one-process measurement issue 5's B2 T16384 chunk fwd bar still needs.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || export PYTHONPATH=$PWD
export PYTHONUNBUFFERED=1
TIER_S=${TIER_S:-200} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_compile.py \
  "tests/ops/attention/test_varlen.py::test_varlen_gpu[ones-causal-d256-4x1-fp32]" \
  "tests/ops/gla/test_gla_varlen.py::test_gpu_masked_gate_packing[chunk-torch.bfloat16]" \
  "tests/ops/gla/test_gla_varlen.py::test_gpu_masked_gate_packing[chunk-torch.float32]"
FLA_SHARD_S=200 timeout 300 python3 scripts/fla_warm.py --shards 14 2>&1 | grep -v "^\[shard" | tee "$OUT/fla_warm.log"
GLA_BENCH_PARTIAL="$OUT/gla-partial.json" timeout ${GLA_S:-150} python3 -m tilefold bench gla --no-plot \
  --providers tilefold,fla,sdpa-flash --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -32
