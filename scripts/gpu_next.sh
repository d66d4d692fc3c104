#!/usr/bin/env bash
# Next device call (prepared 2026-12-03), ~6 minutes on a fresh H200:
#  1. GPU tier of the code committed after the last tier run (launcher host helpers, the eager path's
#     create_graph fix, the dK/dV one-loop variant): attention eager-path, one-loop, backward subset, compile;
#  2. dK/dV one loop vs three (scripts/dkdv_one_loop_bench.py) -- the causal backward lead from ncu;
#  3. host overhead again (scripts/host_profile.py) after the launcher change.
# Keep what lands in $OUT to <= 8 files (a call brings back no more).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
timeout 200 python3 scripts/dkdv_one_loop_bench.py > "$OUT/dkdv_one_loop.jsonl" 2> "$OUT/dkdv_one_loop.err"; cat "$OUT/dkdv_one_loop.jsonl"
timeout 120 python3 scripts/host_profile.py 2>&1 | grep -v -i warn | head -16 > "$OUT/host_profile.log"; cat "$OUT/host_profile.log"
rm -f "$OUT"/cprofile-*.txt "$OUT/host_profile.json"
A=tests/ops/attention
TIER_S=${TIER_S:-200} NPROC=15 bash scripts/gpu_tier.sh $A/test_eager_path.py $A/test_dkdv_one_loop.py $A/test_compile.py \
  $A/test_split_d.py $A/test_varlen.py 2>&1 | tail -4
