#!/usr/bin/env bash
# Last short device call: the GLA records the earlier calls did not reach (fla's autotuned kernels
# compile for minutes), fused_recurrent first, in one process so the numbers are same-run.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || export PYTHONPATH=$PWD
export PYTHONUNBUFFERED=1
GLA_BENCH_MODES=${GLA_BENCH_MODES:-fla:fused_recurrent,tilefold:fused_recurrent,tilefold:chunk,fla:chunk} \
GLA_BENCH_PARTIAL="$OUT/gla-partial.json" timeout ${GLA_S:-290} python3 -m tilefold bench gla --quick --no-plot \
  --providers tilefold,fla --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -30
ls -la "$OUT"
