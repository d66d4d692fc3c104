#!/usr/bin/env bash
# Device call (session 4, last): the rest of the GPU tier on the final code and issue 5's bench again
# after the fused_recurrent prefetch and the SM-filling BV rule of chunk's serial kernels (carry .whl).
#  1. GPU tier: GLA + nn (kernels changed), split-D, dropout, varlen, decode, merge, torch.compile; beside
#     it (niced) fla's autotune configs compile in 6 shard processes (scripts/fla_warm.py --compile-only).
#  2. fla tunes alone on the idle GPU (--tune-only), then python -m tilefold bench gla (both shapes).
#  3. scripts/gla_serial_sweep.py: fwd_h / bwd_dh_v5 tiles at B2 T16384 and B8 T4096, same process.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || export PYTHONPATH=$PWD
export PYTHONUNBUFFERED=1
(FLA_SHARD_S=300 nice -n 10 python3 scripts/fla_warm.py --shards 6 --compile-only 2>&1 | grep -v "^\[shard" > "$OUT/fla_warm.log") &
WARM=$!
A=tests/ops/attention
TIER_S=${TIER_S:-300} NPROC=12 bash scripts/gpu_tier.sh tests/ops/gla tests/nn $A/test_split_d.py $A/test_dropout.py \
  $A/test_varlen.py tests/ops/decode tests/ops/merge $A/test_compile.py
wait $WARM
timeout ${TUNE_S:-100} python3 scripts/fla_warm.py --tune-only 2>&1 | tee -a "$OUT/fla_warm.log"
echo "== gla bench"
GLA_BENCH_PARTIAL="$OUT/gla-partial.json" timeout ${GLA_S:-110} python3 -m tilefold bench gla --no-plot \
  --providers tilefold,fla,sdpa-flash --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -32
echo "== serial sweep"
timeout ${SW_S:-80} python3 scripts/gla_serial_sweep.py 2>&1 | tail -20
ls "$OUT"
