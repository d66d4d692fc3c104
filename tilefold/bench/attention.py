"""``python -m tilefold bench attention``: tilefold beside the anchors, in the same process.

Providers (DESIGN.md §6 names): ``tilefold`` (``tilefold.attention``), ``sdpa-flash``, ``sdpa-cudnn``,
``sdpa-efficient`` (``torch.nn.functional.scaled_dot_product_attention`` pinned to one backend with
``sdpa_kernel``), ``flex`` (FlexAttention under ``torch.compile``, causal through a block mask) and
``fa4`` (``flash_attn.cute``, only if it imports). Plus one ``copy`` record: the bandwidth ceiling.

Shapes: bf16, batch 2, heads 16 (= heads_k), seqlen_q = seqlen_k; full: headdim 64/128/256 ×
seqlen 1k..16k; ``--quick``: headdim 128 × seqlen 8k, 16k; causal and not; modes ``fwd`` (the training
forward: inputs require grad) and ``bwd`` (backward only: ``torch.autograd.grad`` on a retained
graph, so no gradient accumulation is timed). Inputs are fresh ``torch.randn``.

``max_err``: each provider's max |error| against an fp32 math reference at a small shape of the same
head dim and causality (batch 2, heads 16, seqlen 1024): the output for ``fwd`` records, the worst of
dq/dk/dv for ``bwd`` records. A provider that fails records nothing; the first reason per
(provider, mode) is printed once and a count is given at the end.

Without CUDA the op runs a smoke version (fp32, tiny shapes, tilefold only) so the pipeline can be
tested on a CPU; its numbers mean nothing.
"""
from __future__ import annotations

import sys

import torch

from .core import attention_flops, base_record, bench_ms, check_providers, copy_records, register, tflops

PROVIDERS = ("tilefold", "sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "flex", "fa4")
ERR_SEQLEN = 1024


class _Fatal(RuntimeError):
    """A CUDA error that poisons the context: stop measuring, keep what was recorded."""


def _is_sticky_cuda_error(e: BaseException) -> bool:
    msg = str(e)
    return any(s in msg for s in ("illegal memory access", "unspecified launch failure",
                                  "device-side assert", "misaligned address", "illegal instruction"))


# ---------------------------------------------------------------------------------------------
# providers: each ``fn(q, k, v, causal) -> out`` on (B, M, H, D) tensors, out in (B, M, H, D)


def _tilefold():
    import tilefold

    if not hasattr(tilefold, "attention"):
        raise ImportError("tilefold.attention is not defined (yet)")
    attn = tilefold.attention
    return lambda q, k, v, causal: attn(q, k, v, causal=causal)


def _sdpa(backend_name: str):
    # NB: SDPA's is_causal is aligned top-left; the sweep uses seqlen_q == seqlen_k only, where the
    # two alignments agree.
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F

    backend = getattr(SDPBackend, backend_name)

    def fn(q, k, v, causal):
        with sdpa_kernel(backend):
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=causal)
        return o.transpose(1, 2)

    return fn


def _flex():
    import torch._dynamo
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    # Many shapes in one process: let dynamo keep them (default limit is 8).
    for knob in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, max(getattr(torch._dynamo.config, knob), 256))
    # Static shapes (one compile per shape, as PyTorch's own flex benchmarks do): dynamic-shape kernels
    # could be slower and would handicap the anchor. Compiles cost seconds each; a full sweep with
    # flex can take several minutes (leave it out with --providers if time is short).
    compiled = torch.compile(flex_attention, dynamic=False)
    masks: dict = {}

    def block_mask(M, N, device):
        key = (M, N, str(device))
        if key not in masks:
            shift = N - M

            def causal_mod(b, h, q_idx, kv_idx):  # bottom-right aligned, as everywhere in tilefold
                return kv_idx <= q_idx + shift

            masks[key] = create_block_mask(causal_mod, None, None, M, N, device=device)
        return masks[key]

    def fn(q, k, v, causal):
        bm = block_mask(q.shape[1], k.shape[1], q.device) if causal else None
        o = compiled(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=bm)
        return o.transpose(1, 2)

    return fn


def _fa4():
    from flash_attn.cute import flash_attn_func

    def fn(q, k, v, causal):
        o = flash_attn_func(q, k, v, causal=causal)
        return o[0] if isinstance(o, tuple) else o

    return fn


_FACTORIES = {
    "tilefold": _tilefold,
    "sdpa-flash": lambda: _sdpa("FLASH_ATTENTION"),
    "sdpa-cudnn": lambda: _sdpa("CUDNN_ATTENTION"),
    "sdpa-efficient": lambda: _sdpa("EFFICIENT_ATTENTION"),
    "flex": _flex,
    "fa4": _fa4,
}


def _reference(q, k, v, causal):
    """fp32 math-backend SDPA (true fp32: matmul TF32 stays at torch's default, off)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F

    with sdpa_kernel(SDPBackend.MATH):
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=causal)
    return o.transpose(1, 2)


def _inputs(B, M, N, H, HK, D, dtype, device, requires_grad=True):
    q = torch.randn(B, M, H, D, dtype=dtype, device=device, requires_grad=requires_grad)
    k = torch.randn(B, N, HK, D, dtype=dtype, device=device, requires_grad=requires_grad)
    v = torch.randn(B, N, HK, D, dtype=dtype, device=device, requires_grad=requires_grad)
    return q, k, v


class _Failures:
    def __init__(self, bar):
        self.bar, self.seen = bar, {}

    def __call__(self, provider, mode, e):
        if _is_sticky_cuda_error(e):
            raise _Fatal(f"{provider} {mode}: {type(e).__name__}: {e}") from e
        key = (provider, mode)
        if key not in self.seen:
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            self.bar.write(f"[{provider} {mode}] failed, recording nothing: {type(e).__name__}: {first}")
            self.seen[key] = 0
        self.seen[key] += 1
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def summary(self):
        return [f"{p} {m}: {n} case(s) failed" for (p, m), n in self.seen.items()]


def _errors(fn, B, H, D, causal, dtype, device):
    """(fwd max err of out, bwd max err over dq/dk/dv) against the fp32 math reference."""
    q, k, v = _inputs(B, ERR_SEQLEN, ERR_SEQLEN, H, H, D, dtype, device)
    dout = torch.randn(B, ERR_SEQLEN, H, D, dtype=dtype, device=device)
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref = _reference(q32, k32, v32, causal)
    ref_grads = torch.autograd.grad(ref, (q32, k32, v32), dout.float())
    out = fn(q, k, v, causal)
    e_fwd = (out.float() - ref).abs().max().item()
    grads = torch.autograd.grad(out, (q, k, v), dout)
    e_bwd = max((g.float() - r).abs().max().item() for g, r in zip(grads, ref_grads))
    return e_fwd, e_bwd


@register("attention", plot_x="seqlen_q", plot_y="tflops", ratios=("sdpa-cudnn", "sdpa-flash", "fa4"))
def run(quick: bool, progress, providers=None) -> list[dict]:
    cuda = torch.cuda.is_available()
    if cuda:
        device, dtype, B, H = "cuda", torch.bfloat16, 2, 16
        headdims = (128,) if quick else (64, 128, 256)
        seqlens = (8192, 16384) if quick else (1024, 2048, 4096, 8192, 16384)
        names = [p for p in PROVIDERS if providers is None or p in providers]
    else:
        print("no CUDA: CPU smoke run (fp32, tiny shapes, tilefold only); the numbers mean nothing",
              file=sys.stderr)
        device, dtype, B, H = "cpu", torch.float32, 1, 2
        headdims = (64,)
        seqlens = (128, 256) if quick else (128, 256, 512)
        names = [p for p in ("tilefold",) if providers is None or p in providers]
    check_providers(providers, PROVIDERS)

    records: list[dict] = copy_records("attention", providers)

    cases = [(D, S, c) for D in headdims for c in (False, True) for S in seqlens]
    bar = progress(total=len(cases) * len(names) * 2, desc="attention")
    fail = _Failures(bar)
    fns = {}
    for p in names:
        try:
            fns[p] = _FACTORIES[p]()
        except Exception as e:  # noqa: BLE001 - not installed / not importable: say so once
            bar.write(f"[{p}] unavailable: {type(e).__name__}: {e}")
    errs: dict = {}
    try:
        for D, S, causal in cases:
            q, k, v = _inputs(B, S, S, H, H, D, dtype, device)
            shape = dict(batch=B, heads=H, heads_k=H, headdim=D, seqlen_q=S, seqlen_k=S, causal=causal)
            for p in names:
                if p not in fns:
                    bar.update(2)
                    continue
                fn = fns[p]
                if (p, D, causal) not in errs:
                    try:
                        errs[(p, D, causal)] = _errors(fn, 2 if cuda else 1, H, D, causal, dtype, device)
                    except Exception as e:  # noqa: BLE001
                        fail(p, "check", e)
                        errs[(p, D, causal)] = (None, None)
                e_fwd, e_bwd = errs[(p, D, causal)]
                # forward
                try:
                    ms = bench_ms(lambda: fn(q, k, v, causal))
                    fl = attention_flops(B, H, S, S, D, causal=causal, mode="fwd")
                    records.append(base_record("attention", p, "fwd", dtype, **shape, ms=ms,
                                               tflops=tflops(fl, ms), max_err=e_fwd))
                except Exception as e:  # noqa: BLE001
                    fail(p, "fwd", e)
                bar.update()
                # backward only, on a retained graph
                out = None
                try:
                    out = fn(q, k, v, causal)
                    dout = torch.randn_like(out)
                    ms = bench_ms(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True))
                    fl = attention_flops(B, H, S, S, D, causal=causal, mode="bwd")
                    records.append(base_record("attention", p, "bwd", dtype, **shape, ms=ms,
                                               tflops=tflops(fl, ms), max_err=e_bwd))
                except Exception as e:  # noqa: BLE001
                    fail(p, "bwd", e)
                del out
                bar.update()
            del q, k, v
    except _Fatal as e:
        bar.write(f"stopping: CUDA context is broken ({e}); keeping the {len(records)} records so far")
    finally:
        bar.close()
    for line in fail.summary():
        print(line, file=sys.stderr)
    return records
