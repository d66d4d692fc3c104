#!/usr/bin/env bash
# Device call (session 4, second): issue 5's bench with fla-core in the same run, and the GLA half of
# the GPU tier (needs .whl carried: fla-core 0.6.0).
#  1. scripts/fla_warm.py: fla's autotuner configs compiled in 10 shard processes while the GLA + nn
#     GPU tests run beside them (6 workers); then fla tunes alone on the idle GPU (see its docstring).
#  2. python -m tilefold bench gla (both shapes) beside fla and SDPA-flash; records kept as they come.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || export PYTHONPATH=$PWD
export PYTHONUNBUFFERED=1
python3 -c "import fla, torch, triton; print('fla', fla.__version__, 'torch', torch.__version__, 'triton', triton.__version__)"
(OUT=$OUT TIER_S=${TIER_S:-240} NPROC=6 bash scripts/gpu_tier.sh tests/ops/gla tests/nn > "$OUT/tier.txt" 2>&1) &
TIER=$!
FLA_SHARD_S=${FLA_SHARD_S:-240} timeout ${WARM_S:-380} python3 scripts/fla_warm.py --shards 10 2>&1 | grep -v "^\[shard" | tee "$OUT/fla_warm.log"
wait $TIER; cat "$OUT/tier.txt"
echo "== gla bench"
GLA_BENCH_PARTIAL="$OUT/gla-partial.json" timeout ${GLA_S:-200} python3 -m tilefold bench gla --no-plot \
  --providers tilefold,fla,sdpa-flash --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -40
ls -la "$OUT"
