#!/usr/bin/env bash
# Device call 57 (2026-12-04, sixth session), ~7 minutes: (1) keys-in-parallel decode (KPAR) against the shipped tiles
# over the bench grid (scripts/decode_tune.py kpar); (2) the decode GPU tier with KPAR forced (TILEFOLD_DECODE_KPAR=1)
# and test_kpar.py; (3) the three varlen-equals-per-sequence cases call 56 failed (now pinned to one kernel).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== kpar sweep"
timeout ${TUNE_S:-230} python3 scripts/decode_tune.py kpar > "$OUT/decode_kpar_sweep.jsonl" 2> "$OUT/decode_kpar_sweep.err"
echo "rc=$?"; cut -c1-200 "$OUT/decode_kpar_sweep.jsonl"; grep -v -i warn "$OUT/decode_kpar_sweep.err" | tail -5
echo "== decode tier, KPAR forced"
TILEFOLD_DECODE_KPAR=1 TIER_S=${T1_S:-150} NPROC=12 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -8
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode_kpar.log"
echo "== varlen per-sequence"
TIER_S=${T2_S:-90} NPROC=3 PYTEST_K="equals_per_sequence_gpu" bash scripts/gpu_tier.sh tests/ops/attention/test_varlen.py 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_varlen_perseq.log"; rm -f "$OUT/gpu_tier.log"
ls "$OUT"
