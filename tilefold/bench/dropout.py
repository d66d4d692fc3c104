"""`python -m tilefold bench dropout`: the cost of fused dropout. bf16, batch 2, heads 16, headdim 128,
seqlen 8k, causal and not; forward and backward at dropout_p 0 and 0.1 for tilefold and SDPA-flash
(FlashAttention-2, which also fuses dropout), same run. Records carry ``dropout_p``."""
from __future__ import annotations

import sys

import torch

from .core import attention_flops, base_record, bench_ms, check_providers, register, tflops


def _fns(provider):
    if provider == "tilefold":
        import tilefold

        return lambda q, k, v, causal, p: tilefold.attention(q, k, v, causal=causal, dropout_p=p)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def sdpa(q, k, v, causal, p):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, dropout_p=p
            ).transpose(1, 2)
    return sdpa


@register("dropout", plot_x="dropout_p", ratios=("tilefold/sdpa-flash",))
def run(quick: bool, progress, providers=None) -> list[dict]:
    if not torch.cuda.is_available():
        print("bench dropout needs CUDA", file=sys.stderr)
        return []
    B, H, D, S, dtype = 2, 16, 128, 8192, torch.bfloat16
    check_providers(providers, ("tilefold", "sdpa-flash"))
    names = [p for p in ("tilefold", "sdpa-flash") if providers is None or p in providers]
    records = []
    cases = [(c, p) for c in (False, True) for p in (0.0, 0.1)]
    bar = progress(total=len(cases) * len(names), desc="dropout")
    for causal, p in cases:
        q, k, v = (torch.randn(B, S, H, D, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
        do = torch.randn(B, S, H, D, device="cuda", dtype=dtype)
        shape = dict(batch=B, heads=H, heads_k=H, headdim=D, seqlen_q=S, seqlen_k=S, causal=causal, dropout_p=p)
        for name in names:
            try:
                fn = _fns(name)
                fl = attention_flops(B, H, S, S, D, causal=causal, mode="fwd")
                ms = bench_ms(lambda: fn(q, k, v, causal, p))
                records.append(base_record("dropout", name, "fwd", dtype, **shape, ms=ms, tflops=tflops(fl, ms)))
                out = fn(q, k, v, causal, p)
                ms = bench_ms(lambda: torch.autograd.grad(out, (q, k, v), do, retain_graph=True))
                records.append(base_record("dropout", name, "bwd", dtype, **shape, ms=ms,
                                           tflops=tflops(2.5 * fl, ms)))
            except Exception as e:  # noqa: BLE001
                bar.write(f"[{name}] p={p} failed: {type(e).__name__}: {str(e)[:200]}")
            bar.update()
    return records
