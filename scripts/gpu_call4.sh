#!/usr/bin/env bash
# Device call: GPU tests of the hd256 descriptor configs and the GLA tier, then the headline attention
# bench (hd128, 8k/16k, beside cuDNN and FA2) and the GLA bench beside fla-core (carry .whl).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || export PYTHONPATH=$PWD
export PYTHONUNBUFFERED=1
PYTEST_K="d256 and not fp32 or gla or GLA" TIER_S=${TIER_S:-250} bash scripts/gpu_tier.sh \
  tests/ops/attention/test_forward.py tests/ops/attention/test_backward.py tests/ops/attention/test_varlen.py \
  tests/ops/gla tests/nn
echo "== attention bench"
timeout ${ATT_S:-110} python3 -m tilefold bench attention --quick --no-plot --providers tilefold,sdpa-cudnn,sdpa-flash \
  --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -30
echo "== gla bench"
GLA_BENCH_PARTIAL="$OUT/gla-partial.json" timeout ${GLA_S:-215} python3 -m tilefold bench gla --quick --no-plot \
  --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -30
ls -la "$OUT"
