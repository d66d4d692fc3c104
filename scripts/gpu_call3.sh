#!/usr/bin/env bash
# One device call after the fp32-backward, decode-v2, dropout-v2 and hd256-candidate changes:
# GPU tests of what changed, then the decode and dropout benchmarks and the hd256 config sweep.
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
A=tests/ops/attention
TIER_S=${TIER_S:-200} bash scripts/gpu_tier.sh \
  "$A/test_backward.py::test_backward_gpu[b2-q1023-k1-mqa4x1-d72-cap5-fp32]" \
  "$A/test_backward.py::test_backward_gpu[b2-q1023-k1-gqa8x2-d40-fp32]" \
  "$A/test_varlen.py::test_varlen_gpu[long-full-d64-8x2-fp32]" \
  "$A/test_varlen.py::test_varlen_gpu[long-win0_-1-d256-8x2-fp32]" \
  "$A/test_varlen.py::test_varlen_gpu[ones-causal-d256-4x1-fp32]" \
  "$A/test_backward.py::test_backward_grad_into_gpu" \
  $A/test_dropout.py tests/ops/decode
echo "== decode bench"
timeout ${DEC_S:-130} python3 -m tilefold bench decode --quick --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -40
echo "== dropout bench"
timeout ${DROP_S:-100} python3 -m tilefold bench dropout --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -20
echo "== hd256 sweep"
SWEEP_S=8192 timeout ${SW_S:-110} python3 scripts/gpu_attn_sweep.py --hd256 --no-checks > "$OUT/sweep256.log" 2>&1
grep -E '"bench"' "$OUT/sweep256.log" | cut -c1-200
[ -f "$OUT/sweep.jsonl" ] && mv "$OUT/sweep.jsonl" "$OUT/sweep256.jsonl"
ls -la "$OUT"
