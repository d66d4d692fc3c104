#!/usr/bin/env bash
# Device call 65 (2026-12-04, seventh session), ~4 minutes: the decode GPU tier (with tests/ops/decode/test_window_splits.py)
# and the A/B of the splits sharing out the visible keys against the previous code (scripts/decode_window_ab.py; run
# `rm -rf ab_old && mkdir -p ab_old && git archive <old> tilefold | tar -x -C ab_old && mv ab_old/tilefold ab_old/tilefold_old`
# here first).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=${TD_S:-170} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_decode.log"; rm -f "$OUT/gpu_tier.log"
timeout ${AB_S:-240} python3 scripts/decode_window_ab.py > "$OUT/decode-window-ab.jsonl" 2> "$OUT/ab.err"
echo "ab rc=$?"; tail -3 "$OUT/ab.err"
python3 - "$OUT/decode-window-ab.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print(r["B"], r["N"], r["window"], r["round"], "old", r["us_old"], r["plan_old"], "new", r["us_new"], r["plan_new"], "diff", r["maxdiff"])
PY
