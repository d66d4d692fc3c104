#!/usr/bin/env bash
# Device call 104 (2026-12-05, sixteenth session), ~6 min: ALiBi in the Hopper Gluon backward (dK / dV key-major: the
# distance per element in _probs_t, the tile's head's slope loaded per tile; dQ: _alibi_bias after the mask; offline
# sm_90 dK/dV hd128 non-causal LDL/STL 16/15 -> 34/30, causal 63/57 -> 96/90 (it spills without ALiBi too), dQ none) --
# the ALiBi GPU tests (each Gluon kernel must take the slopes) and the Gluon backward's GPU tests (the kernels' new
# arguments), then scripts/alibi_bench.py, five interleaved rounds.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=250 NPROC=10 bash scripts/gpu_tier.sh tests/ops/attention/test_alibi.py tests/ops/attention/test_backward_sm90.py \
  2>&1 | tail -14
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call104.log"; rm -f "$OUT/gpu_tier.log"
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
