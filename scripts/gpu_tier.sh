#!/usr/bin/env bash
# The GPU test tier in one device call: pytest -m gpu over the given paths with one xdist worker per core
# (Triton compiles dominate), every result line in $OUT/gpu_tier.log, a summary at the end.
#   TIER_S=540 bash scripts/gpu_tier.sh tests/ops/attention tests/ops/merge ...
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
# default workers: one per core, at most one per 16 GB of GPU memory (call 100: 14 workers on an 80 GB H100 ran the decode
# suite's fp64 references at up to 1M keys out of memory; 5 passed them)
MEM_GB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1 | awk '{print int($1 / 1024)}')
DEF_NPROC=$(( MEM_GB / 16 < $(nproc) ? MEM_GB / 16 : $(nproc) )); [ "$DEF_NPROC" -ge 1 ] || DEF_NPROC=1
TILEFOLD_FAIL_LOG=$OUT/failures.txt timeout ${TIER_S:-540} python3 -m pytest -m gpu -v -n ${NPROC:-$DEF_NPROC} --max-worker-restart 30 -p no:cacheprovider \
  -rfE --tb=short -W ignore ${PYTEST_K:+-k "$PYTEST_K"} "${@:-tests}" > "$OUT/gpu_tier.log" 2>&1
echo "== gpu tier rc=$? passed=$(grep -c ' PASSED ' "$OUT/gpu_tier.log") failed=$(grep -c ' FAILED ' "$OUT/gpu_tier.log") \
errors=$(grep -c ' ERROR ' "$OUT/gpu_tier.log")"
grep -E "^(FAILED|ERROR)|crashed|short test summary| passed| failed" "$OUT/gpu_tier.log" | cut -c1-300 | tail -60
