#!/usr/bin/env bash
# Device call 77 (2026-12-04, eighth session), ~2 minutes: seqlen_q 8, shipped vs BLOCK64_CONFIG at one_per_sm, 3 rounds
# (scripts/decode_q8_ab.py).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout ${SW_S:-500} python3 scripts/decode_q8_ab.py > "$OUT/decode-q8-ab.jsonl" 2> "$OUT/sweep.err"
echo "sweep rc=$?"; tail -3 "$OUT/sweep.err"
python3 - "$OUT/decode-q8-ab.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print(r.get("round"), r.get("B"), r.get("N"), r.get("cfg"), r.get("S"), r.get("gbps"), r.get("graph_us"), r.get("maxdiff", ""), r.get("tile"))
PY
