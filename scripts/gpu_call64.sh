#!/usr/bin/env bash
# Device call 64 (2026-12-04, seventh session), ~3 minutes: KPAR auto vs off on unmeasured shapes of its band, and a
# re-measure of B=32 128k (scripts/decode_kpar_band.py).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,temperature.gpu,clocks.sm,power.draw --format=csv,noheader
timeout ${AB_S:-400} python3 scripts/decode_kpar_band.py > "$OUT/decode-kpar-band.jsonl" 2> "$OUT/band.err"
echo "rc=$?"; tail -3 "$OUT/band.err"
nvidia-smi --query-gpu=name,temperature.gpu,clocks.sm,power.draw --format=csv,noheader
python3 - "$OUT/decode-kpar-band.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print({k: v for k, v in r.items() if k not in ("H", "HK", "dtype")})
PY
