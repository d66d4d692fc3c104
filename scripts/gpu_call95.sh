#!/usr/bin/env bash
# Device call 95 (2026-12-05, fifteenth session), ~5 min: the paged forward's descriptor path with each key tile's
# table entry loaded one iteration ahead (call 94 measured the entry loaded beside its boxes at 0.77-0.82x the
# contiguous call, below gather + contiguous; offline the pipeliner had left K / V two buffers deep, now three) --
# GPU tests of the paged paths, then the prefill bench with the providers interleaved over three rounds.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=150 NPROC=14 PYTEST_K="paged or leftpad" bash scripts/gpu_tier.sh tests/ops/decode/test_paged_varlen.py \
  tests/ops/decode/test_kvcache.py 2>&1 | tail -8
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call95.log"; rm -f "$OUT/gpu_tier.log"
timeout 240 python3 scripts/paged_prefill_bench.py --out "$OUT" 2>&1 | python3 -c "
import json, sys
for l in sys.stdin:
    try:
        r = json.loads(l)
    except ValueError:
        print(l, end=''); continue
    print(r['batch'], r['seqlen_q'], r['seqlen_k'], r['page'], r['provider'].ljust(21), '%.1f' % r['tflops'],
          ' '.join('%.3f' % t for t in r['ms_rounds']), 'err %.2g' % r['max_abs_diff_vs_contiguous'])
"
