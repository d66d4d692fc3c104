#!/usr/bin/env bash
# Device call 37 (2026-12-04, the session's last): the Gluon forward at head dim 256 (new: 64-key tiles, 2 slots;
# compiled offline only) — a smoke with a timeout (a failure turns it off for the rest of the call), its bench
# beside forward.py's kernel / cuDNN / FA2 with ping-pong on and off; then the host time per call at 1k tokens
# (the Gluon kernels' launch path); then the GPU tests of the forward_sm90 suite (hd256 cases new) and the
# test_backward grid at head dims below 256 on the Gluon backward default (its d256 cases passed in call 36).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== hd256 forward smoke"
if ! timeout 60 python3 -c "
import torch, tilefold
from tilefold.ops.attention import config as cfg, forward_sm90 as sm90
calls = []
real = sm90.attention_fwd_sm90
sm90.attention_fwd_sm90 = lambda *a, **kw: calls.append(1) or real(*a, **kw)
for B, M, N, causal in ((1, 1000, 1000, True), (2, 512, 1024, False)):
    q = torch.randn(B, M, 4, 256, device='cuda', dtype=torch.bfloat16)
    k, v = (torch.randn(B, N, 2, 256, device='cuda', dtype=torch.bfloat16) for _ in range(2))
    o = tilefold.attention(q, k, v, causal=causal); cfg.FWD_SM90 = '0'
    t = tilefold.attention(q, k, v, causal=causal); cfg.FWD_SM90 = 'auto'
    err = (o.float() - t.float()).abs().max().item(); print(B, M, N, causal, 'gluon calls', len(calls), 'max diff', err)
    assert len(calls) and err < 2e-2
" 2>&1 | tail -4; then echo "SMOKE FAILED: hd256 forward off for the rest"; export TILEFOLD_FWD_SM90_HD256=0; fi
echo "== hd256 forward bench"
timeout 120 python3 scripts/fwd_sm90_bench.py --hd 256 --variants ws-pp:64,2 ws-nopp:64,2 --out "$OUT/fwd_hd256.jsonl" 2>&1 \
  | python3 -c "
import sys, json
for l in sys.stdin:
    try: r = json.loads(l)
    except Exception: print(l.rstrip()[:200]); continue
    print(r['provider'], r['seqlen'], r['causal'], round(r.get('tflops', 0), 1), r.get('max_err', r.get('error')))"
echo "== host profile (1k tokens)"
mkdir -p "$OUT/hp" && OUT="$OUT/hp" HOST_PROFILE_NO_KERNELS=1 timeout 75 python3 scripts/host_profile.py 2>&1 | tail -14
tar -C "$OUT" -czf "$OUT/host_profile.tgz" hp && rm -rf "$OUT/hp"
echo "== tier"
TIER_S=${TIER_S:-280} NPROC=15 PYTEST_K="not d256 or test_forward_sm90" bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py \
  tests/ops/attention/test_backward.py tests/ops/attention/test_eager_path.py tests/ops/attention/test_split_d.py 2>&1 | tail -12
ls "$OUT"
