#!/usr/bin/env bash
# Device call 41 (2026-12-04, third session): KV3D now on by default. (1) every test of the Gluon kernels' files
# (incl. the new fp16 and dropout KV3D cases) and the general attention suites' batch > 1 cases that reach the Gluon
# kernels (16-bit, head dim 64/128/256, no softcap: ragged ones now take KV3D), and the dropout suite; (2) the tier-2
# suites (decode / merge / GLA / nn / compat / bench: not run since the softcap tanh change, which touches the decode
# kernel); (3) 1k-4k tokens: host-bound or GPU-bound? (scripts/small_seq_profile.py).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== tier A: Gluon kernel files, batch > 1 cases, dropout"
TIER_S=${TA_S:-320} NPROC=15 PYTEST_K="test_forward_sm90 or test_backward_sm90 or test_dropout or ((b2 or b3) and (d64 or d128 or d256) and not cap and not fp32)" \
  bash scripts/gpu_tier.sh tests/ops/attention 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_A.log"
echo "== tier 2: decode, merge, gla, nn, compat, bench"
TIER_S=${T2_S:-150} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode tests/ops/merge tests/ops/gla tests/nn tests/compat tests/bench 2>&1 | tail -10
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_2.log"
echo "== small-sequence profile"
timeout ${SP_S:-100} python3 scripts/small_seq_profile.py 2>&1 | tail -40
ls "$OUT"
