#!/usr/bin/env bash
# Device call 50 (2026-12-04, fifth session): what had not run on the GPU on the final code — (1) the decode suite
# after the fourth session's review fixes (PDL gate, plan key), with test_options_and_strides_change_between_calls
# (cut by calls 45/47/48's limits); (2) every test of the two Gluon attention files after attention_bwd's single call
# sites, philox.dropout_args and do_not_specialize=RNG_ARGS; (3) the six GLA cases that hit calls 41/42's limits.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== decode"
TIER_S=${TD_S:-150} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"
echo "== gluon attention files"
TIER_S=${TA_S:-250} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py tests/ops/attention/test_backward_sm90.py 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_sm90.log"
echo "== GLA leftovers"
TIER_S=${TG_S:-110} NPROC=6 bash scripts/gpu_tier.sh $(grep "tests/ops/gla" scripts/gpu_call41_todo.txt) 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_gla.log"; rm -f "$OUT/gpu_tier.log"
ls "$OUT"
