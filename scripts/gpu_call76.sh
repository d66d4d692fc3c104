#!/usr/bin/env bash
# Device call 76 (2026-12-04, eighth session), ~3 minutes: decode tiles x split counts for seqlen_q = 8 (32 packed rows)
# (scripts/decode_q16_sweep.py --m 8), never swept before.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout ${SW_S:-500} python3 scripts/decode_q16_sweep.py --m 8 > "$OUT/decode-q8-sweep.jsonl" 2> "$OUT/sweep.err"
echo "sweep rc=$?"; tail -3 "$OUT/sweep.err"
python3 - "$OUT/decode-q8-sweep.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print(r.get("kind"), r.get("B"), r.get("N"), r.get("cfg"), r.get("S"), r.get("gbps"), r.get("graph_us"), r.get("maxdiff", ""), r.get("error", ""))
PY
