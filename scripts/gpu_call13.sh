#!/usr/bin/env bash
# Device call (session 4, after gpu_call12.sh): the GPU-tier tests gpu_call12 left unfinished (varlen,
# decode, merge, one GLA case; torch.compile ran in the previous session's call 9) and the chunk GLA tests
# again, now that the small-grid serial config is fwd_h 32/4/2 + bwd_dh 32/4/3 (gpu_call13.tests).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
TIER_S=${TIER_S:-170} NPROC=15 bash scripts/gpu_tier.sh $(cat scripts/gpu_call13.tests)
