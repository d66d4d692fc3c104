#!/usr/bin/env bash
# Device call 102 (2026-12-05, sixteenth session), ~8 min: ALiBi in the Hopper warp-specialized Gluon forward
# (offline sm_90: hd128 3904 -> 4656 SASS, causal 4440 -> 5176, no spills) -- the ALiBi GPU tests (now through the Gluon
# forward where it applies) and the Gluon forward's GPU tests (the kernel's new arguments), then scripts/alibi_bench.py
# (Gluon / Triton, with / without ALiBi, interleaved rounds).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=300 NPROC=8 bash scripts/gpu_tier.sh tests/ops/attention/test_alibi.py tests/ops/attention/test_forward_sm90.py \
  2>&1 | tail -14
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call102.log"; rm -f "$OUT/gpu_tier.log"
timeout 170 python3 scripts/alibi_bench.py --out "$OUT" 2>&1 | python3 -c "
import json, sys
for l in sys.stdin:
    try:
        r = json.loads(l)
    except ValueError:
        print(l, end=''); continue
    print(r['mode'], 'causal' if r['causal'] else 'full', r['provider'].ljust(22), '%.1f' % r['tflops'],
          ' '.join('%.3f' % t for t in r['ms_rounds']))
"
