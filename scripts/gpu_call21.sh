#!/usr/bin/env bash
# Device call 21 (2026-12-03, third session), ~5 minutes:
#  1. decode host path after the plan cache / direct launch / stream scratch (scripts/decode_tune.py host),
#     and the descriptor configs x split counts (sweep2);
#  2. GPU tier: tests/ops/decode (incl. test_launch_cache) default and with descriptors forced, and the four
#     attention tests call 20 did not reach.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== decode tests"
timeout 120 python3 -m pytest -m gpu -q -n 8 -p no:cacheprovider -W ignore -rfE --tb=short tests/ops/decode \
  > "$OUT/gpu_tier_decode.log" 2>&1; echo "rc=$?"; tail -15 "$OUT/gpu_tier_decode.log" | cut -c1-300
for ps in host:90 sweep2:200; do
  part=${ps%%:*}
  timeout ${ps##*:} python3 scripts/decode_tune.py $part >> "$OUT/decode_tune2.jsonl" 2>> "$OUT/decode_tune2.err"
  echo "$part rc=$?"
done
grep -v sweep2 "$OUT/decode_tune2.jsonl"; grep -v -i warn "$OUT/decode_tune2.err" | head -40
echo "== decode tests, descriptors forced"
TILEFOLD_DECODE_TMA=1 timeout 90 python3 -m pytest -m gpu -q -n 8 -p no:cacheprovider -W ignore -rfE --tb=short tests/ops/decode \
  > "$OUT/gpu_tier_decode_tma.log" 2>&1; echo "rc=$?"; tail -5 "$OUT/gpu_tier_decode_tma.log" | cut -c1-300
A=tests/ops/attention
timeout 150 python3 -m pytest -m gpu -v -n 4 -p no:cacheprovider -W ignore -rfE --tb=short \
  "$A/test_compile.py::test_compile_fullgraph_gpu[full-torch.float16]" \
  "$A/test_compile.py::test_compile_fullgraph_varlen_gpu[torch.float32]" \
  "$A/test_varlen.py::test_varlen_gpu[ones-causal-d256-4x1-fp32]" \
  "$A/test_varlen.py::test_varlen_gpu_layouts[fp32-padded]" > "$OUT/gpu_tier_rest.log" 2>&1
echo "rc=$?"; grep -E "PASSED|FAILED|ERROR|passed|failed" "$OUT/gpu_tier_rest.log" | cut -c1-200 | tail -8
