"""Device call 64 (2026-12-04, seventh session): the KPAR "auto" policy on shapes in its band that calls 57-60 never
measured (they were bf16, GQA G = 4, 128 programs, unmasked, seqlen_q 1, hd128). Per case, three rounds with fresh
tensors: TILEFOLD_DECODE_KPAR=0 (the 2-D tiles and their split choice) vs auto, GPU µs by graph replay, the plan
(S, KPAR) and max |out - fp32 reference|. Plus B=32 128k (call 63's bench had tilefold 0.89× cuDNN there, against
1.006-1.010× in calls 46-60 on the same kernel SASS): tilefold auto vs cuDNN, graph µs and do_bench GB/s.
JSON lines on stdout."""
import json
import os

import torch
import torch.nn.functional as F
import triton.testing
from bench_timing import cudnn_gqa, graph_us

from tilefold.ops.decode import kernel as K
from tilefold.ops.decode import split_kv_attention

# name, B, M (seqlen_q), H, HK, D, N, dtype, window
CASES = [("mha-b4", 4, 1, 32, 32, 128, 8192, torch.bfloat16, (-1, -1)),
         ("mha-b4", 4, 1, 32, 32, 128, 32768, torch.bfloat16, (-1, -1)),
         ("fp16", 16, 1, 32, 8, 128, 8192, torch.float16, (-1, -1)),
         ("causal", 16, 1, 32, 8, 128, 8192, torch.bfloat16, (-1, 0)),
         ("causal", 16, 1, 32, 8, 128, 32768, torch.bfloat16, (-1, 0)),
         ("window4k", 16, 1, 32, 8, 128, 32768, torch.bfloat16, (4096, 0)),
         ("b15", 15, 1, 32, 8, 128, 8192, torch.bfloat16, (-1, -1)),
         ("d96", 16, 1, 32, 8, 96, 8192, torch.bfloat16, (-1, -1)),
         ("q4-causal", 16, 4, 32, 8, 128, 8192, torch.bfloat16, (-1, 0))]


def reference(q, k, v, window, scale):
    B, M, H, D = q.shape
    N, HK = k.shape[1], k.shape[2]
    qf, kf, vf = (t.float().transpose(1, 2) for t in (q, k, v))
    kf, vf = kf.repeat_interleave(H // HK, 1), vf.repeat_interleave(H // HK, 1)
    s = qf @ kf.transpose(-1, -2) * scale
    i = torch.arange(M, device=q.device)[:, None] + (N - M)
    j = torch.arange(N, device=q.device)[None, :]
    ok = torch.ones(M, N, dtype=torch.bool, device=q.device)
    if window[1] >= 0:
        ok &= j <= i + window[1]
    if window[0] >= 0:
        ok &= j >= i - window[0]
    return (s.masked_fill(~ok, float("-inf")).softmax(-1) @ vf).transpose(1, 2)


for name, B, M, H, HK, D, N, dt, win in CASES:
    for rnd in range(3):
        q = torch.randn(B, M, H, D, device="cuda", dtype=dt)
        k = torch.randn(B, N, HK, D, device="cuda", dtype=dt)
        v = torch.randn(B, N, HK, D, device="cuda", dtype=dt)
        ref = reference(q, k, v, win, D ** -0.5)
        rec = dict(case=name, B=B, M=M, H=H, HK=HK, D=D, N=N, dtype=str(dt), window=win, round=rnd)

        def tf():
            return split_kv_attention(q, k, v, num_splits=0, softmax_scale=D ** -0.5, window=win, softcap=0.0)[0]

        for mode in ("0", "auto"):
            os.environ["TILEFOLD_DECODE_KPAR"] = mode
            K.clear_plans()
            out = tf()
            rec[f"plan_{mode}"] = [(p.S, p.cons["KPAR"], p.cons["BLOCK_N"], p.use_tma) for p in K._PLANS.values()]
            rec[f"err_{mode}"] = float((out.float() - ref).abs().max())
            rec[f"us_{mode}"] = graph_us(tf)
        os.environ["TILEFOLD_DECODE_KPAR"] = "auto"
        print(json.dumps(rec), flush=True)
        del q, k, v, ref

B, N, H, HK, D = 32, 131072, 32, 8, 128
nbytes = 2 * B * N * HK * D * 2
for rnd in range(3):
    q = torch.randn(B, 1, H, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    rec = dict(case="b32-128k", B=B, N=N, round=rnd)
    K.clear_plans()
    fns = {"tilefold": lambda: split_kv_attention(q, k, v, num_splits=0, softmax_scale=D ** -0.5, window=(-1, -1),
                                                  softcap=0.0)[0],
           "cudnn": lambda: cudnn_gqa(q, k, v)}
    outs = {n: f() for n, f in fns.items()}
    rec["plan"] = [(p.S, p.cons["KPAR"], p.cons["BLOCK_N"], p.use_tma) for p in K._PLANS.values()]
    rec["diff_vs_cudnn"] = float((outs["tilefold"].float() - outs["cudnn"].float()).abs().max())
    for n, f in fns.items():
        rec[f"us_{n}"] = graph_us(f, n=50)
        rec[f"gbps_{n}"] = round(nbytes / triton.testing.do_bench(f, warmup=25, rep=200, return_mode="median") / 1e6, 1)
    print(json.dumps(rec), flush=True)
    del q, k, v, outs
