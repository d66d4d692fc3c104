#!/usr/bin/env bash
# Device call (session 3, first): attention hd128 sweep of backward tiles / descriptors / LPT order and
# the forward's LPT order (compiles prewarmed in parallel), then a per-kernel CUDA profile of chunk_gla
# fwd+bwd at the bench shape (B8 T4096 H16 K=V=128 bf16).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.max.sm,memory.used --format=csv,noheader
SWEEP_ORDERS=head,lpt timeout ${SWEEP_T:-330} python3 scripts/gpu_attn_sweep.py --bwd128 --no-checks --prewarm 2>&1 \
  | tee "$OUT/sweep.log" | grep -v '^{"kind": "bench"' | tail -40
echo "== gla profile"
timeout ${GLA_T:-200} python3 - <<'PY' 2>&1 | tee "$OUT/gla_prof.log" | tail -40
import torch, torch.nn.functional as F, time, triton
from tilefold.gla import chunk_gla
B, T, H, K = 8, 4096, 16, 128
dev, dt = "cuda", torch.bfloat16
q, k, v = (torch.randn(B, T, H, K, device=dev, dtype=dt, requires_grad=True) for _ in range(3))
g = (F.logsigmoid(torch.randn(B, T, H, K, device=dev)) / 16).to(dt).requires_grad_()
do = torch.randn(B, T, H, K, device=dev, dtype=dt)
t0 = time.time()
def step():
    o, _ = chunk_gla(q, k, v, g)
    torch.autograd.grad(o, (q, k, v, g), do)
step(); torch.cuda.synchronize(); print(f"first call (compiles) {time.time() - t0:.0f}s", flush=True)
print("fwd ms", triton.testing.do_bench(lambda: chunk_gla(q.detach(), k.detach(), v.detach(), g.detach()), return_mode="median"))
print("fwd+bwd ms", triton.testing.do_bench(step, return_mode="median"))
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CUDA]) as p:
    for _ in range(5):
        step()
    torch.cuda.synchronize()
print(p.key_averages().table(sort_by="cuda_time_total", row_limit=20, max_name_column_width=60))
PY
ls -la "$OUT"
