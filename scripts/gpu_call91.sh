#!/usr/bin/env bash
# Device call 91 (2026-12-05, twelfth session). PART=1 (~5 min): (1) scripts/kvcache_small_probe.py: host vs GPU time
# of the host-bound decode cases (B=1 8k / 32k) for tilefold.attention, the kvcache path and SDPA-cuDNN, and a cProfile
# of tilefold.attention's host path (calls 89-90: tilefold 0.62-0.75x cuDNN at B=1 8k, the kvcache path ~100 us).
# (2) The fp16 GLA GPU test under the 2x rule (against the fp16 torch recurrence) instead of the a-priori 1e-3, and
# scripts/gla_fp16_error.py --no-fla (max-abs / RMS of each mode and of that recurrence). (3) The dropout bench with the
# shipped key policy (causal Gluon backward takes the key at use: expected ~1.65x there, 1.83x in call 89).
# PART=2 (~5 min): the kvcache GPU tests with the new paged cache (block_table), and the quick decode bench with the
# paged providers (16- and 256-key pages, shuffled) beside tilefold and cuDNN. Prediction: paged256 within 3% of
# tilefold where the pointer tile is shipped (B=1 / 8 splits), up to ~10% slower where tilefold takes descriptor or
# KPAR tiles (paged falls back to pointer tiles); paged16 a few % below paged256 (per-row table loads).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
if [ "${PART:-1}" = 1 ]; then
timeout 150 python3 scripts/kvcache_small_probe.py --out "$OUT" 2>&1 | tail -60
TIER_S=120 NPROC=12 PYTEST_K="gpu_mode_vs_reference" bash scripts/gpu_tier.sh tests/ops/gla/test_gla_modes.py 2>&1 | tail -8
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call91_gla.log"; rm -f "$OUT/gpu_tier.log"
timeout 90 python3 scripts/gla_fp16_error.py --no-fla --out "$OUT" 2>&1 | tail -16
timeout 100 python3 -m tilefold bench dropout --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -14
fi
if [ "${PART:-2}" = 2 ] || [ "${PART:-}" = 23 ]; then
TIER_S=150 NPROC=12 bash scripts/gpu_tier.sh tests/ops/decode/test_kvcache.py 2>&1 | tail -8
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call91_kvcache.log"; rm -f "$OUT/gpu_tier.log"
timeout 240 python3 -m tilefold bench decode --quick --no-plot --out "$OUT" \
  --providers tilefold,tilefold-paged16,tilefold-paged256,sdpa-cudnn 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -30
fi
if [ "${PART:-3}" = 3 ] || [ "${PART:-}" = 23 ]; then  # after the host-path trim (env_get, one stream_scratches call): the probe again
timeout 150 python3 scripts/kvcache_small_probe.py --out "$OUT" 2>&1 | grep "^N="
fi
