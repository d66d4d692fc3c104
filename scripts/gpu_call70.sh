#!/usr/bin/env bash
# Device call 70 (2026-12-04, eighth session), ~6 minutes: decode tiles x split counts for seqlen_q = 16
# (scripts/decode_q16_sweep.py), never swept before.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout ${SW_S:-500} python3 scripts/decode_q16_sweep.py > "$OUT/decode-q16-sweep.jsonl" 2> "$OUT/sweep.err"
echo "sweep rc=$?"; tail -3 "$OUT/sweep.err"
python3 - "$OUT/decode-q16-sweep.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print(r.get("kind"), r.get("B"), r.get("N"), r.get("cfg"), r.get("S"), r.get("gbps"), r.get("graph_us"), r.get("maxdiff", ""), r.get("error", ""))
PY
