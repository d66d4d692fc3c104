#!/usr/bin/env bash
# Device call 103 (2026-12-05, sixteenth session), ~6 min: ALiBi in the Gluon forward as one fma per element plus a
# per-row offset where a key tile lies wholly on one side of every row's diagonal (_alibi_tile; head dims <= 128), the
# per-element distance where it crosses one -- the ALiBi GPU tests (Gluon cases exercise the three tile kinds), then
# scripts/alibi_bench.py with five interleaved rounds (call 102: the per-element distance everywhere, 536 / 488 TFLOP/s).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=200 NPROC=8 bash scripts/gpu_tier.sh tests/ops/attention/test_alibi.py 2>&1 | tail -14
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call103.log"; rm -f "$OUT/gpu_tier.log"
timeout 200 python3 scripts/alibi_bench.py --out "$OUT" --rounds 5 2>&1 | python3 -c "
import json, sys
for l in sys.stdin:
    try:
        r = json.loads(l)
    except ValueError:
        print(l, end=''); continue
    print(r['mode'], 'causal' if r['causal'] else 'full', r['provider'].ljust(22), '%.1f' % r['tflops'],
          ' '.join('%.3f' % t for t in r['ms_rounds']))
"
