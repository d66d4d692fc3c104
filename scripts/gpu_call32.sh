#!/usr/bin/env bash
# Device call 32 (2026-12-04): the Gluon dQ kernel beside the Gluon dK/dV — smoke run (short timeout: a
# pipeline deadlock shows as a timeout), the backward_sm90 tests plus call 31's unfinished leftovers in one
# tier, then the backward bench (Gluon both / Gluon dK/dV only / backward.py / FA2).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== smoke"
timeout 80 python3 - <<'PY' 2>&1 | tail -15
import torch, tilefold
from tilefold.ops.attention import config as cfg
for D, causal, B, M, N, H, HK in ((128, False, 2, 1024, 1024, 4, 4), (128, True, 1, 1000, 777, 8, 2), (64, True, 2, 500, 1088, 4, 1)):
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
echo "== tier: backward_sm90 + leftovers"
TIER_S=${TIER_S:-270} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_backward_sm90.py $(cat scripts/gpu_call32_todo.txt) 2>&1 | tail -14
echo "== bench"
timeout 170 python3 scripts/bwd_sm90_bench.py --out "$OUT/bwd_sm90.jsonl" 2>&1 | tail -10
ls "$OUT"
