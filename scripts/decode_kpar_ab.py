"""Device call 59 (2026-12-04, sixth session): A/B of the KPAR one-wave policy at B=16 (the bench of call 58 had it
below call 57's sweep for the same config). Per case, three rounds, each with freshly allocated tensors (placement
varies): shipped 2-split tiles (TILEFOLD_DECODE_KPAR=0), KPAR auto (unsplit, one program per (batch, key head)),
cuDNN; GB/s by do_bench (the bench's method) and GPU µs by graph replay. JSON lines on stdout. (Call 59 ran it with a
CUDA-event graph timer of its own, 50 replays; it now uses bench_timing's, 200 replays, like decode_fold_bench.)"""
import json
import os

import torch
import triton.testing
from bench_timing import cudnn_gqa, graph_us

from tilefold.ops.decode import kernel as K
from tilefold.ops.decode import split_kv_attention

H, HK, D = 32, 8, 128


for B, N in [(16, 8192), (16, 32768), (16, 131072), (16, 262144), (32, 8192)]:
    for rnd in range(3):
        q = torch.randn(B, 1, H, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
        nbytes = 2 * B * N * HK * D * 2
        rec = dict(B=B, N=N, round=rnd, k_ptr_mod_2m=k.data_ptr() % (1 << 21))

        def tf():
            return split_kv_attention(q, k, v, num_splits=0, softmax_scale=D ** -0.5, window=(-1, -1), softcap=0.0)[0]

        for name, mode in (("shipped2split", "0"), ("kpar", "auto"), ("cudnn", None)):
            if mode is not None:
                os.environ["TILEFOLD_DECODE_KPAR"] = mode
                K.clear_plans()
            fn = (lambda: cudnn_gqa(q, k, v)) if mode is None else tf
            fn()
            if mode is not None:
                rec[f"S_{name}"] = [p.S for p in K._PLANS.values()]
                rec[f"kpar_{name}"] = [p.cons["KPAR"] for p in K._PLANS.values()]
            rec[f"gbps_{name}"] = round(nbytes / triton.testing.do_bench(fn, warmup=25, rep=100,
                                                                         return_mode="median") / 1e6, 1)
            rec[f"us_{name}"] = graph_us(fn)
        print(json.dumps(rec), flush=True)
        del q, k, v
