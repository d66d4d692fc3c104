#!/usr/bin/env bash
# Sweep of the Gluon backward's tiles (prepared 2026-12-04, not yet run): each override in its own process
# (they are read at import), hd128 and hd64 at 8k, backward time beside the Triton kernels and FA2.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
for cfg in "dkdv=64,2 dq=64,3" "dkdv=64,3 dq=64,3" "dkdv=64,2 dq=64,2" "dkdv=64,2 dq=64,4" "dkdv=64,2 dq=32,4"; do
  dk=${cfg%% *}; dq=${cfg##* }
  echo "== $cfg"
  TILEFOLD_BWD_SM90_CFG=${dk#dkdv=} TILEFOLD_BWD_SM90_DQ_CFG=${dq#dq=} timeout 100 python3 scripts/bwd_sm90_bench.py \
    --seqs 8192 --dims 128,64 --rounds 1 --out "$OUT/sweep-${dk#dkdv=}-${dq#dq=}.jsonl" 2>&1 | tail -4
done
ls "$OUT"
