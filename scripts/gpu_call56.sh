#!/usr/bin/env bash
# Device call 56 (2026-12-04, sixth session): (1) the tests tightened after call 54 — the producer test (plans must take
# MASK_WS; its ragged case with KV3D on) and the RNG-value test (the three Gluon kernels must run at hd128); (2) the 41
# Triton-backward varlen / fp32 / softcap cases unfinished at call 51's limit (scripts/gpu_call55_todo.txt; none failed);
# first, the keys-in-parallel decode prototype (scripts/decode_kpar_proto.py bench) beside cuDNN and the shipped path.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== kpar prototype"
timeout ${KPAR_S:-150} python3 scripts/decode_kpar_proto.py bench > "$OUT/decode_kpar.jsonl" 2> "$OUT/decode_kpar.err"
echo "rc=$?"; cut -c1-200 "$OUT/decode_kpar.jsonl"; grep -v -i warn "$OUT/decode_kpar.err" | tail -5
echo "== tightened tests"
TIER_S=${T1_S:-100} NPROC=12 PYTEST_K="mask_producer or rng_values" bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py \
  tests/ops/attention/test_dropout.py 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_tightened.log"
echo "== backward leftovers"
TIER_S=${T2_S:-170} NPROC=15 bash scripts/gpu_tier.sh $(cat scripts/gpu_call55_todo.txt) 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_bwd_leftovers.log"; rm -f "$OUT/gpu_tier.log"
ls "$OUT"
