#!/usr/bin/env bash
# Device call (2026-12-03, second session, after the unrolled fold): the decode GPU tier with the one-launch combine
# (TILEFOLD_DECODE_COMBINE=fused) plus test_combine_modes (both modes), then the two modes against cuDNN
# (scripts/decode_combine_bench.py).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TILEFOLD_DECODE_COMBINE=fused TIER_S=${TIER_S:-90} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -8
echo "== decode combine bench"
timeout ${BENCH_S:-100} python3 scripts/decode_combine_bench.py > "$OUT/decode_combine.jsonl" 2> "$OUT/decode_combine.err"
cat "$OUT/decode_combine.jsonl"; grep -v -i warn "$OUT/decode_combine.err" | tail -5
