#!/usr/bin/env bash
# Device call 90 (2026-12-05, eleventh session), ~7 minutes, after call 89 (both parts):
#  1. the dropout key A/B with a third mode: call 89 measured the words loaded at the kernel start (RNG_PTR) 8% slower
#     than integer keys on the causal backward (260 -> 239 TFLOP/s; others 0.6-1.9%); offline, loading the words inside
#     each dropout_keep instead (KEY_AT_USE: the pointer passed as the seed) leaves the causal Gluon dK/dV at 68/63
#     spill instructions (integer key 88/83, RNG_PTR 97/89). Prediction: KEY_AT_USE within 2% of int everywhere.
#  2. the decode quick bench again with 3 rounds (call 89's first case -- B 1, 8k, seqlen_q 1 -- measured tilefold
#     29.5 us against 21.2 us in call 71 and tilefold-kvcache 99 us: a first-case artifact or real?).
#  3. GLA fp16 / bf16 errors beside fla 0.6 (call 89 stopped before fla's numbers: its autotuning), small shapes first.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 150 python3 scripts/dropout_rng_ab.py --out "$OUT" 2>&1 | tail -14
timeout 200 python3 -m tilefold bench decode --quick --no-plot --rounds 3 --providers tilefold,tilefold-kvcache,sdpa-cudnn \
  --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -24
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>&1 | tail -2
PYTHONPATH=/tmp/site:$PYTHONPATH timeout 180 python3 scripts/gla_fp16_error.py --out "$OUT" 2>&1 | tail -40
