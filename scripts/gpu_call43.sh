#!/usr/bin/env bash
# Device call 43 (2026-12-04, fourth session). (1) What had not run on the GPU since the third session's refactors of the
# Gluon kernels and launchers (_view_spec, _tma_rows, the constexpr ring layouts; offline SASS byte-identical): every
# test of the two Gluon files, the attention suites' batch > 1 Gluon-eligible cases and the dropout suite -- now also
# through the new raw launches (launch._RawLaunch: the launcher's C entry with cached encoded TMA descriptors) and the
# preprocess's direct launch; (2) the decode suite (its direct launches now take the raw path too); (3) where the host
# time of one launch goes (scripts/launch_micro.py) and the 1k-4k host / GPU profile on this code.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== launch micro"
timeout ${LM_S:-60} python3 scripts/launch_micro.py 2>&1 | grep -v Warn | tail -40
echo "== tier A: Gluon kernel files, batch > 1 cases, dropout"
TIER_S=${TA_S:-330} NPROC=15 PYTEST_K="test_forward_sm90 or test_backward_sm90 or test_dropout or ((b2 or b3) and (d64 or d128 or d256) and not cap and not fp32)" \
  bash scripts/gpu_tier.sh tests/ops/attention 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_A.log"
echo "== decode"
TIER_S=${TD_S:-70} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -8
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"
rm -f "$OUT/gpu_tier.log"
echo "== small-sequence profile"
timeout ${SP_S:-100} python3 scripts/small_seq_profile.py 2>&1 | grep -v Warn | tail -30
ls "$OUT"
