"""Device call 74 (2026-12-04, eighth session): does a decode call synchronize with the GPU? torch's sync debug mode
set to "error" raises on any synchronizing torch op (``.item()``, blocking copies, ...) inside the call; a Triton launch is not
one. bf16, 32 / 8 heads, hd128: B=1 32k seqlen_q 1 and 16 (both fused-fold plans), B=8 8k, B=16 128k (combine kernel)."""
import torch

from tilefold.ops.decode import split_kv_attention

for B, M, N in [(1, 1, 32768), (1, 16, 32768), (8, 1, 8192), (16, 1, 131072)]:
    q = torch.randn(B, M, 32, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, N, 8, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    call = lambda: split_kv_attention(q, k, v, num_splits=0, softmax_scale=128 ** -0.5, window=(-1, -1),  # noqa: E731
                                      softcap=0.0)
    call()  # first call: compile and plan outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            call()
        print(B, M, N, "no synchronizing op in the call")
    except RuntimeError as e:
        print(B, M, N, "SYNC:", str(e)[:300])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
