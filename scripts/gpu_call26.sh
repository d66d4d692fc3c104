#!/usr/bin/env bash
# Device call 26 (2026-12-03, fourth session): the Gluon sm_90 forward — its GPU tests, then its speed
# beside forward.py's kernel and SDPA (scripts/fwd_sm90_bench.py).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
timeout 200 python3 -m pytest -m gpu -q -n 8 -p no:cacheprovider -W ignore -rfE --tb=short tests/ops/attention/test_forward_sm90.py \
  > "$OUT/gpu_tier_fwd_sm90.log" 2>&1; echo "rc=$?"; grep -E "FAILED|ERROR|passed|failed|Error" "$OUT/gpu_tier_fwd_sm90.log" | head -20 | cut -c1-400
timeout 60 python3 -m pytest -m gpu -q -p no:cacheprovider -W ignore -rfE --tb=short tests/ops/decode/test_launch_cache.py \
  > "$OUT/gpu_tier_launch_cache.log" 2>&1; echo "rc=$?"; tail -3 "$OUT/gpu_tier_launch_cache.log" | cut -c1-300
timeout 240 python3 scripts/fwd_sm90_bench.py --out "$OUT/fwd_sm90.jsonl" 2>&1 | cut -c1-200
