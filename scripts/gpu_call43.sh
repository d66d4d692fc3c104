#!/usr/bin/env bash
# Next device call (prepared 2026-12-04, third session, after its device time ran out): what has not run on the final
# code of that session (KV3D default + direct Gluon launches from cached plans, both GPU-tested in calls 41 / 42 through
# the Gluon test files): (1) the attention suites' batch > 1 cases that reach the Gluon kernels (they passed in call 41
# on the launch path before the plans), (2) the five fp32 GLA tests that hit call 41 / 42's time limits (GLA code
# unchanged since 2026-12-03), (3) host time per step at 1k-4k tokens on the final code (scripts/small_seq_profile.py).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== attention suites, batch > 1, Gluon-eligible"
TIER_S=${TA_S:-200} NPROC=15 PYTEST_K="(b2 or b3) and (d64 or d128 or d256) and not cap and not fp32" \
  bash scripts/gpu_tier.sh tests/ops/attention/test_forward.py tests/ops/attention/test_backward.py \
  tests/ops/attention/test_split_d.py tests/ops/attention/test_dropout.py 2>&1 | tail -10
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_attention.log"
echo "== GLA fp32 leftovers"
TIER_S=${TG_S:-240} NPROC=5 bash scripts/gpu_tier.sh $(grep "tests/ops/gla" scripts/gpu_call41_todo.txt) 2>&1 | tail -8
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_gla.log"
echo "== small-sequence profile"
timeout ${SP_S:-120} python3 scripts/small_seq_profile.py 2>&1 | grep -v Warn | tail -40
ls "$OUT"
