#!/usr/bin/env bash
# Device call 100 (2026-12-05, sixteenth session), ~7 min: ALiBi on the split-KV / decode / paged / KV-cache paths --
# its GPU tests with the decode suite (the decode kernel's new arguments) and the ALiBi suite, then
# scripts/alibi_decode_bench.py (decode kernel and paged attention_with_kvcache with and without ALiBi, interleaved).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/scripts PYTHONUNBUFFERED=1
TIER_S=330 NPROC=14 bash scripts/gpu_tier.sh tests/ops/attention/test_alibi.py tests/ops/decode 2>&1 | tail -14
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_call100.log"; rm -f "$OUT/gpu_tier.log"
timeout 200 python3 scripts/alibi_decode_bench.py --out "$OUT" 2>&1 | python3 -c "
import json, sys
for l in sys.stdin:
    try:
        r = json.loads(l)
    except ValueError:
        print(l, end=''); continue
    print('B=%d q=%d k=%d' % (r['batch'], r['seqlen_q'], r['seqlen_k']), r['provider'].ljust(15), '%.0f GB/s' % r['gbps'],
          ' '.join('%.4f' % t for t in r['ms_rounds']), 'err %.1e' % r['paged_vs_contig_max_err'])
"
