#!/usr/bin/env bash
# Device call 73 (2026-12-04, eighth session), ~4 minutes: keys in parallel with 8 warps (scripts/decode_kpar8_ab.py).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
timeout ${AB_S:-420} python3 scripts/decode_kpar8_ab.py > "$OUT/decode-kpar8-ab.jsonl" 2> "$OUT/ab.err"
echo "ab rc=$?"; tail -3 "$OUT/ab.err"
python3 - "$OUT/decode-kpar8-ab.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print(r["B"], r["N"], r["round"], r["cfg"], r.get("S", ""), r.get("gbps"), r.get("graph_us"), r.get("maxdiff", ""), r.get("kpar", ""), r.get("error", ""))
PY
