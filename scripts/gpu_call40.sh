#!/usr/bin/env bash
# Next device call (prepared 2026-12-04 after the session's device time ran out): the attention GPU tests that have
# not run since the Gluon forward took head dim 256 (call 37): every d256 case of the attention suite (test_forward's
# and test_backward's now run the Gluon forward; they passed in call 36 on forward.py's kernel), the dropout and
# torch.compile suites, and the GLA / decode / merge tiers last run on 2026-12-03 (their code has not changed since).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== tier 1: head dim 256, dropout, compile"
TIER_S=${T1_S:-300} NPROC=15 PYTEST_K="d256 or hd256 or dropout or compile" bash scripts/gpu_tier.sh tests/ops/attention 2>&1 | tail -10
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_attention.log"
echo "== KV3D (opt-in, first GPU run): its tests, then ragged lengths (8020) at batch 2 on it vs the Triton kernels"
TIER_S=${T3_S:-150} NPROC=15 PYTEST_K="kv3d or batches_stay_apart" bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py \
  tests/ops/attention/test_backward_sm90.py 2>&1 | tail -6
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_kv3d.log"
timeout ${TIME_S:-120} python3 -c "
import torch, triton, tilefold
from tilefold.ops.attention import config as cfg, forward_sm90 as sm90, backward_sm90 as bw
for D in (64, 128, 256):
    for causal in (False, True):
        q, k, v = (torch.randn(2, 8020, 16, D, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        fl = 4 * 2 * 16 * 8020 * 8020 * D / (2 if causal else 1)
        r = {}
        for name, kv3d, sw in (('gluon-kv3d', True, 'auto'), ('triton', False, '0')):
            sm90.KV3D, cfg.FWD_SM90, bw.KV3D, cfg.BWD_SM90 = kv3d, sw, kv3d, sw
            with torch.no_grad():
                r['fwd-' + name] = fl / triton.testing.do_bench(lambda: tilefold.attention(q, k, v, causal=causal)) / 1e9
            o = tilefold.attention(q, k, v, causal=causal); do = torch.randn_like(o)
            r['bwd-' + name] = 2.5 * fl / triton.testing.do_bench(
                lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True)) / 1e9
        print(D, causal, {n: round(x, 1) for n, x in r.items()})
" 2>&1 | tail -8
[ "${TIER2:-1}" = 0 ] && { ls "$OUT"; exit 0; }
echo "== tier 2: decode, merge, gla, nn, compat, bench"
TIER_S=200 NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode tests/ops/merge tests/ops/gla tests/nn tests/compat tests/bench 2>&1 | tail -10
ls "$OUT"
