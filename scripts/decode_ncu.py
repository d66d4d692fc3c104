"""Driver for ncu (device call 55, 2026-12-04, sixth session): one decode call of ``provider`` (cudnn | tilefold) at
batch B, seqlen_k N (argv: provider B N), bf16, 32 query / 8 key heads, hd128, seqlen_q 1, inside
cudaProfilerStart / Stop after warm-up calls (run ncu with --profile-from-start off), so ncu sees exactly the
kernels of one call: their grid, registers, shared memory, duration, DRAM bytes and SM-active spread."""
import sys

import torch
from bench_timing import cudnn_gqa

from tilefold.ops.decode import split_kv_attention

provider, B, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
H, HK, D = 32, 8, 128
g = torch.Generator(device="cuda").manual_seed(N + B)
q = torch.randn(B, 1, H, D, device="cuda", dtype=torch.bfloat16, generator=g)
k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16, generator=g)
v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16, generator=g)


def call():
    if provider == "cudnn":
        return cudnn_gqa(q, k, v)
    return split_kv_attention(q, k, v, num_splits=0, softmax_scale=D ** -0.5, window=(-1, -1), softcap=0.0)[0]


for _ in range(3):
    call()
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
call()
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
