#!/usr/bin/env bash
# Device call 29 (2026-12-03, fourth session): the Gluon forward with the softmax scale folded into the exponent
# (one FFMA per score): its GPU tests, the GPU tests call 28 left unfinished (scripts/gpu_call29_todo.txt:
# test_backward, test_dropout), then bench attention --quick and the hd64 forward beside the Triton kernel.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TIER_S=${TIER_S:-200} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py $(cat scripts/gpu_call29_todo.txt) 2>&1 | tail -8
echo "== attention bench --quick"
timeout 100 python3 -m tilefold bench attention --quick --no-plot --providers tilefold,sdpa-cudnn,sdpa-flash \
  --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -12
timeout 60 python3 scripts/fwd_sm90_bench.py --hd 64 --variants ws-nopp:128,2 --out "$OUT/fwd_sm90_hd64.jsonl" > /dev/null 2>&1
python3 -c "
import json
for l in open('$OUT/fwd_sm90_hd64.jsonl'):
    r=json.loads(l); print(r['provider'][:26].ljust(26), r['hd'], r['seqlen'], 'c' if r['causal'] else 'n', round(r.get('tflops',0)))
"
