#!/usr/bin/env bash
# Device call (session 3): the benchmark JSONs of issues 2-4 in one call -- attention --full (hd 64/128/256,
# 1k..16k, beside cuDNN and FA2), decode --quick (beside cuDNN, FA2 and copy), dropout -- with the
# attention/dropout kernels compiled first in parallel processes.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.max.sm,memory.used --format=csv,noheader
timeout ${WARM_S:-120} python3 scripts/gpu_prewarm.py attn dropout 2>&1 | tail -12
echo "== attention bench"
timeout ${ATT_S:-260} python3 -m tilefold bench attention --full --no-plot --providers tilefold,sdpa-cudnn,sdpa-flash \
  --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -70
echo "== decode bench"
timeout ${DEC_S:-110} python3 -m tilefold bench decode --quick --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -40
echo "== dropout bench"
timeout ${DROP_S:-80} python3 -m tilefold bench dropout --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -20
ls -la "$OUT"
