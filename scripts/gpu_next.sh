#!/usr/bin/env bash
# Next device call (prepared 2026-12-03, second session), ~5 minutes on a fresh H200:
#  1. GPU tier of what the session's last runs did not cover on the final code: test_varlen (varlen causal
#     hd128 backward now takes the one-loop dK/dV), test_eager_path, test_compile, and the decode tests
#     (default combine "auto"; the no-keys fix);
#  2. decode combine modes against cuDNN (scripts/decode_combine_bench.py). Before this call, consider
#     re-applying the unrolled fold of commit 3a4d061 (_combine_rows, 8 states per round trip) and timing it
#     here: the sequential fold lost 1-6% where bytes dominate (benchmarks/NOTES.md, "Decode: one launch").
# Keep what lands in $OUT to <= 8 files (a call brings back no more).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
A=tests/ops/attention
TIER_S=${TIER_S:-260} NPROC=15 bash scripts/gpu_tier.sh $A/test_varlen.py $A/test_eager_path.py $A/test_compile.py \
  tests/ops/decode 2>&1 | tail -8
echo "== decode combine bench"
timeout ${BENCH_S:-120} python3 scripts/decode_combine_bench.py > "$OUT/decode_combine.jsonl" 2> "$OUT/decode_combine.err"
cat "$OUT/decode_combine.jsonl"; grep -v -i warn "$OUT/decode_combine.err" | tail -5
