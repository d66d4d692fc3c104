"""Device call 62 (2026-12-04, seventh session): A/B of the KPAR key assignment. Shipped: warp w folds one contiguous
chunk of the program's key range (4 streams per program). Variant (``KPAR_INTERLEAVE``): warp w takes tile w of every
W-tile step, so a program streams one contiguous region, as cuDNN's 1x4x1 decode kernel does (call 55's ncu). Same
instruction count offline (355 vs 354 SASS per step, 16-key 4-stage tile). Per case, three rounds with freshly
allocated tensors; each provider's GB/s by do_bench (median) and GPU µs by graph replay. JSON lines on stdout.
  auto / auto-il      the shipped policy (TILEFOLD_DECODE_KPAR=auto), chunked / interleaved
  force / force-il    TILEFOLD_DECODE_KPAR=1 (KPAR in the split cases too), chunked / interleaved
  il-n16s5, il-n32s3  interleaved with other KPAR tiles (one-wave cases)
Outcome (results/decode-kpar-il-ab-h200-2026-12-04-call62.jsonl; benchmarks/NOTES.md): no difference beyond noise, so the
variant (the INTERLEAVE constexpr of _decode_kpar, KPAR_IL of decode_fwd_kernel, kernel.KPAR_INTERLEAVE) was removed
again; this script needs it back to run."""
import json
import os

import torch
import triton.testing
from bench_timing import cudnn_gqa, graph_us

from tilefold.ops.decode import kernel as K
from tilefold.ops.decode import split_kv_attention

H, HK, D = 32, 8, 128
SHIPPED = K.KPAR_CONFIG
VAR = {"il-n16s5": K.DecodeConfig(16, 16, 4, 5, 1, kpar=4), "il-n32s3": K.DecodeConfig(16, 32, 4, 3, 1, kpar=4)}

CASES = [(16, 8192, "wave"), (16, 32768, "wave"), (8, 8192, "split"), (4, 32768, "split"), (32, 8192, "split"),
         (8, 32768, "split")]
for B, N, kind in CASES:
    provs = ["auto", "auto-il"] + (list(VAR) if kind == "wave" else ["force", "force-il"]) + ["cudnn"]
    for rnd in range(3):
        q = torch.randn(B, 1, H, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
        nbytes = 2 * B * N * HK * D * 2
        rec = dict(B=B, N=N, round=rnd)
        ref = split_kv_attention(q, k, v, num_splits=1, softmax_scale=D ** -0.5, window=(-1, -1), softcap=0.0)[0]

        def tf():
            return split_kv_attention(q, k, v, num_splits=0, softmax_scale=D ** -0.5, window=(-1, -1), softcap=0.0)[0]

        for name in provs:
            if name != "cudnn":
                os.environ["TILEFOLD_DECODE_KPAR"] = "1" if name.startswith("force") else "auto"
                K.KPAR_INTERLEAVE = "il" in name
                K.KPAR_CONFIG = VAR.get(name, SHIPPED)
                K.clear_plans()
            fn = (lambda: cudnn_gqa(q, k, v)) if name == "cudnn" else tf
            try:
                out = fn()
                if name != "cudnn":
                    rec[f"plan_{name}"] = [(p.S, p.cons["KPAR"], p.cons["KPAR_IL"], p.cons["BLOCK_N"]) for p in K._PLANS.values()]
                rec[f"err_{name}"] = float((out.float() - ref.float()).abs().max())
                rec[f"gbps_{name}"] = round(nbytes / triton.testing.do_bench(fn, warmup=25, rep=100,
                                                                             return_mode="median") / 1e6, 1)
                rec[f"us_{name}"] = graph_us(fn)
            except Exception as e:  # noqa: BLE001
                rec[f"error_{name}"] = repr(e)[:300]
        K.KPAR_INTERLEAVE, K.KPAR_CONFIG = False, SHIPPED
        print(json.dumps(rec), flush=True)
        del q, k, v, ref
