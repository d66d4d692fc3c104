#!/usr/bin/env bash
# Device call 105 (2026-12-05, sixteenth session), ~4 min: the Gluon backward with ALiBi made opt-in (call 104: slower
# than backward.py's kernels) with a dQ-only mode -- the Gluon ALiBi GPU tests in the three modes (0 / 1 / dq), then
# scripts/alibi_bench.py --gluon-bwd --bwd-only (forward + backward with each backward choice, interleaved).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=150 NPROC=10 PYTEST_K=gluon bash scripts/gpu_tier.sh tests/ops/attention/test_alibi.py 2>&1 | tail -14
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call105.log"; rm -f "$OUT/gpu_tier.log"
timeout 120 python3 scripts/alibi_bench.py --out "$OUT" --rounds 3 --gluon-bwd --bwd-only 2>&1 | python3 -c "
import json, sys
for l in sys.stdin:
    try:
        r = json.loads(l)
    except ValueError:
        print(l, end=''); continue
    print(r['mode'], 'causal' if r['causal'] else 'full', r['provider'].ljust(25), '%.1f' % r['tflops'],
          ' '.join('%.3f' % t for t in r['ms_rounds']))
"
