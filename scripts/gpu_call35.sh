#!/usr/bin/env bash
# Next device call (prepared 2026-12-04 after the session's device time ran out): the opt-in Gluon dQ at head
# dim 256 (tests + its backward time beside the Triton dQ and FA2), the cases left unfinished in calls 32/34,
# then the whole attention GPU tier on the Gluon defaults. ~9 minutes.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== hd256 dQ tests + leftovers"
TIER_S=150 NPROC=15 bash scripts/gpu_tier.sh "tests/ops/attention/test_backward_sm90.py::test_sm90_dq_hd256_opt_in" \
  "tests/ops/attention/test_dropout.py::test_decoded_mask_reproduces_out_and_grads_gpu[gqa-causal-fp32]" \
  $(cat scripts/gpu_call33_todo.txt) 2>&1 | tail -10
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_hd256.log"
echo "== hd256 bench (Gluon dQ opt-in)"
TILEFOLD_BWD_SM90_DQ_HD256=1 timeout 120 python3 scripts/bwd_sm90_bench.py --dims 256 --out "$OUT/bwd_hd256.jsonl" 2>&1 | tail -5
echo "== attention tier"
TIER_S=240 NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention 2>&1 | tail -10
ls "$OUT"
