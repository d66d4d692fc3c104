#!/usr/bin/env bash
# Device call 98 (2026-12-05, fifteenth session), ~4 min: ALiBi's distance from the index vectors converted before the
# broadcast (offline sm_90: forward 3742 -> 3438 SASS, p = 0 2878) -- the ALiBi GPU tests, then scripts/alibi_bench.py
# (tilefold Gluon / Triton without ALiBi / Triton with ALiBi, interleaved rounds).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=150 NPROC=14 bash scripts/gpu_tier.sh tests/ops/attention/test_alibi.py 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call98.log"; rm -f "$OUT/gpu_tier.log"
timeout 200 python3 scripts/alibi_bench.py --out "$OUT" 2>&1 | python3 -c "
import json, sys
for l in sys.stdin:
    try:
        r = json.loads(l)
    except ValueError:
        print(l, end=''); continue
    print(r['mode'], 'causal' if r['causal'] else 'full', r['provider'].ljust(16), '%.1f' % r['tflops'],
          ' '.join('%.3f' % t for t in r['ms_rounds']))
"
