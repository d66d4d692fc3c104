"""Device call 77 (2026-12-04, eighth session): seqlen_q 8 (32 packed rows) -- the shipped plan (32-row v2 tile, the
bandwidth model's split count) against BLOCK64_CONFIG at one_per_sm splits, three rounds alternating, where call 76 was
noisy or unmeasured (B=16, B=8 8k, B=2 / B=12 32k). GPU µs by CUDA graph replay, GB/s by do_bench. JSON lines."""
import json
import sys

import torch

from tilefold.ops.decode import choose_num_splits
from tilefold.ops.decode import kernel as K

sys.path.insert(0, "scripts")
from decode_tune import D, H, HK, data, gb, graph_us, tf, use_config  # noqa: E402

M = 8
CASES = [(16, 32768), (16, 8192), (8, 8192), (2, 32768), (12, 32768), (8, 131072)]

if __name__ == "__main__":
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for B, N in CASES:
        q, k, v, nbytes = data(B, N, M)
        use_config(None)
        S0 = choose_num_splits(B, H, M, N, D, q.dtype, q.device, heads_k=HK)
        S1 = K.one_per_sm(B * HK, N, sms)
        ref = tf(q, k, v).float()
        for rnd in range(3):
            for name, cfg, S in (("shipped", None, S0), ("block64", K.BLOCK64_CONFIG, S1)):
                use_config(cfg)
                rec = dict(B=B, N=N, M=M, round=rnd, cfg=name, S=S, gbps=gb(nbytes, lambda: tf(q, k, v, S)),
                           graph_us=graph_us(lambda: tf(q, k, v, S)),
                           maxdiff=float((tf(q, k, v, S).float() - ref).abs().max()),
                           tile=sorted({(p.cons["BLOCK_M"], p.options["num_stages"]) for p in K._PLANS.values()}))
                print(json.dumps(rec), flush=True)
        use_config(None)
        del q, k, v, ref
