#!/usr/bin/env bash
# Final device call: the reduced GPU tier for the attention family, then the backward-descriptor and
# head-dim-256 config sweeps at 8k (each beside its SDPA anchors in the same process).
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/gpu_out}
timeout ${TEST_TIMEOUT:-240} python3 -m pytest -m gpu -q -n 12 --max-worker-restart 20 -p no:cacheprovider -rf --tb=line \
  tests/ops/attention tests/compat tests/ops/merge tests/ops/decode > "$OUT/gpu_tests.log" 2>&1
echo "== gpu tests rc=$?" | tee -a "$OUT/gpu_tests.log"; grep -E "passed|failed|FAILED|Error" "$OUT/gpu_tests.log" | tail -25
SWEEP_S=8192 timeout 80 python3 scripts/gpu_attn_sweep.py --v3 > "$OUT/sweep3.log" 2>&1; cp "$OUT/sweep.jsonl" "$OUT/sweep3.jsonl"
grep -E '"bench"|"check"' "$OUT/sweep3.log" | cut -c1-230
SWEEP_S=8192 SWEEP_D=256 timeout 100 python3 scripts/gpu_attn_sweep.py --hd256 --no-checks > "$OUT/sweep256.log" 2>&1; cp "$OUT/sweep.jsonl" "$OUT/sweep256.jsonl"
grep -E '"bench"' "$OUT/sweep256.log" | cut -c1-230
rm -f "$OUT/sweep.jsonl"
