#!/usr/bin/env bash
# Device call 31 (2026-12-04): the Gluon dK/dV (backward_sm90.py) first — a smoke run with a short timeout
# (a pipeline deadlock shows as a timeout, not a hung call), its GPU tests, its bench beside backward.py's
# dK/dV and FA2 — then the tests call 30 was to run (the Gluon forward's unrun cases, the 109 + 2 leftovers).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== smoke"
timeout 90 python3 - <<'PY' 2>&1 | tail -15
import torch, tilefold
from tilefold.ops.attention import config as cfg
for D, causal, B, M, N, H, HK in ((128, False, 2, 1024, 1024, 4, 4), (128, True, 1, 1000, 777, 8, 2), (64, True, 2, 512, 1100, 4, 1)):
    torch.manual_seed(0)
    q = torch.randn(B, M, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    out = tilefold.attention(q, k, v, causal=causal)
    do = torch.randn_like(out)
    g = []
    for mode in ("auto", "0"):
        cfg.BWD_SM90 = mode
        g.append(torch.autograd.grad(out, (q, k, v), do, retain_graph=True))
    torch.cuda.synchronize()
    for n, a, b in zip("qkv", g[0], g[1]):
        print(D, causal, n, "max|gluon-triton|", (a.float() - b.float()).abs().max().item(), "max|triton|", b.float().abs().max().item(), "finite", torch.isfinite(a).all().item())
PY
echo "== sm90 backward tests"
TIER_S=150 NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_backward_sm90.py 2>&1 | tail -12
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_bwd_sm90.log"
echo "== bench"
timeout 150 python3 scripts/bwd_sm90_bench.py --out "$OUT/bwd_sm90.jsonl" 2>&1 | tail -10
echo "== rest of the tier"
TIER_S=${TIER_S_REST:-150} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_forward_sm90.py tests/ops/attention/test_dropout.py \
  $(grep -v test_dropout scripts/gpu_call29_todo.txt) 2>&1 | tail -8
ls "$OUT"
