#!/usr/bin/env bash
# Device call 74 (2026-12-04, eighth session), ~6 minutes: decode sync check, the host-time breakdown of B=1 32k
# (decode_tune.py host), the decode GPU tier (test_block64's split expectation fixed), the full decode bench in 3 rounds.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
timeout 60 python3 scripts/decode_sync_check.py 2>&1 | grep -v Warn | tail -5
timeout 90 python3 scripts/decode_tune.py host > "$OUT/decode-host.jsonl" 2> "$OUT/decode-host-profile.txt"; echo "host rc=$?"
cat "$OUT/decode-host.jsonl"
TIER_S=${TD_S:-170} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -4
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"; rm -f "$OUT/gpu_tier.log"
timeout ${BD_S:-260} python3 -m tilefold bench decode --full --rounds 3 --no-plot --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -3
