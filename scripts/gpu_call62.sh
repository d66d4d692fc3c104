#!/usr/bin/env bash
# Device call 62 (2026-12-04, seventh session), ~4 minutes: the KPAR GPU cases with the interleaved key assignment
# (KPAR_INTERLEAVE True in the tree for this call), then the A/B of chunked vs interleaved (scripts/decode_kpar_il_ab.py).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
TIER_S=${TD_S:-100} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode/test_kpar.py 2>&1 | tail -5
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_kpar_il.log"; rm -f "$OUT/gpu_tier.log"
timeout ${AB_S:-300} python3 scripts/decode_kpar_il_ab.py > "$OUT/decode-kpar-il-ab.jsonl" 2> "$OUT/ab.err"
echo "ab rc=$?"; tail -3 "$OUT/ab.err"
python3 - "$OUT/decode-kpar-il-ab.jsonl" <<'PY'
import json, sys, collections
agg = collections.defaultdict(list)
for l in open(sys.argv[1]):
    r = json.loads(l)
    for k, v in r.items():
        if k.startswith("gbps_"):
            agg[(r["B"], r["N"], k[5:])].append(v)
for (B, N, p), v in sorted(agg.items()):
    print(B, N, p, v)
PY
