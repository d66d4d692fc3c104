"""``python -m tilefold bench gla``: tilefold's three GLA modes beside flash-linear-attention and SDPA.

Providers (DESIGN.md §6 names): ``tilefold`` (a ``mode_name`` field: fused_recurrent, chunk,
fused_chunk), ``fla`` (``fla.ops.gla`` chunk_gla and fused_recurrent_gla, only if fla imports; same
``mode_name`` field) and ``sdpa-flash`` (causal softmax attention at the same B, T, H and head dim
K: the yardstick of a quadratic layer). Plus one ``copy`` record: the bandwidth ceiling.

Shapes (bf16, K = V = 128, H = 16): B 8 × T 4096 and B 2 × T 16384; ``--quick``: only B 8 × T 4096.
Modes ``fwd`` (inputs require grad) and ``fwd+bwd`` (forward and ``backward`` of a random cotangent).

FLOPs counted for every GLA record: the recurrence's own 4·B·T·H·K·V for the forward (state update and
readout), ×3.5 for fwd+bwd (DESIGN §6's 2.5× backward). bytes (gbps): q, k, v, g read once and o
written once (fwd). ``max_err``: max |o - ref| and ``rms_err`` ‖o - ref‖/‖ref‖ against the fp64
recurrence at B 1 × T 512 × H 2 for the forward records (same provider and mode_name).
"""
from __future__ import annotations

import json
import os
import sys

import torch
import torch.nn.functional as F

from .core import attention_flops, base_record, bench_ms, check_providers, copy_records, gbps, register, tflops

SHAPES_FULL = [(8, 4096, 16, 128, 128), (2, 16384, 16, 128, 128)]
SHAPES_QUICK = [(8, 4096, 16, 128, 128)]
ERR_SHAPE = (1, 512, 2, 128, 128)


def _providers():
    """[(provider, mode_name, fn(q, k, v, g) -> o)]; fla only if it imports."""
    from tilefold.gla import chunk_gla, fused_chunk_gla, fused_recurrent_gla

    out = [("tilefold", "chunk", lambda q, k, v, g: chunk_gla(q, k, v, g)[0]),
           ("tilefold", "fused_chunk", lambda q, k, v, g: fused_chunk_gla(q, k, v, g)[0]),
           ("tilefold", "fused_recurrent", lambda q, k, v, g: fused_recurrent_gla(q, k, v, g)[0])]
    try:
        from fla.ops.gla import chunk_gla as fla_chunk
        from fla.ops.gla import fused_recurrent_gla as fla_rec

        out += [("fla", "chunk", lambda q, k, v, g: fla_chunk(q, k, v, g)[0]),
                ("fla", "fused_recurrent", lambda q, k, v, g: fla_rec(q, k, v, gk=g)[0])]
    except Exception as e:  # noqa: BLE001 - an optional anchor
        print(f"[gla bench] fla not available: {type(e).__name__}: {e}")
    # GLA_BENCH_MODES="fla:fused_recurrent,tilefold:chunk": only these, in this order (a device call
    # with little time left measures what it needs first; fla's autotuned backward compiles for minutes)
    want = [w.strip() for w in os.environ.get("GLA_BENCH_MODES", "").split(",") if w.strip()]
    if want:
        by_name = {f"{p}:{m}": (p, m, fn) for p, m, fn in out}
        out = [by_name[w] for w in want if w in by_name]
    return out


def _inputs(B, T, H, K, V, dtype, device, grad):
    q = torch.randn(B, T, H, K, device=device, dtype=dtype)
    k = torch.randn(B, T, H, K, device=device, dtype=dtype)
    v = torch.randn(B, T, H, V, device=device, dtype=dtype)
    g = (F.logsigmoid(torch.randn(B, T, H, K, device=device, dtype=torch.float32)) / 16).to(dtype)
    xs = (q, k, v, g)
    if grad:
        for x in xs:
            x.requires_grad_()
    return xs


def _partial(records):
    """With GLA_BENCH_PARTIAL=<path>, keep the records so far there (a run cut short keeps its numbers)."""
    path = os.environ.get("GLA_BENCH_PARTIAL")
    if path:
        with open(path, "w") as f:
            json.dump(records, f, indent=1)


def _errors(fn, dtype, device):
    from tilefold.ops.gla.naive import naive_recurrent_gla

    xs = _inputs(*ERR_SHAPE, dtype, device, grad=False)
    with torch.no_grad():
        o = fn(*xs).double().cpu()
    ref, _ = naive_recurrent_gla(*(x.cpu() for x in xs))
    return (o - ref).abs().max().item(), ((o - ref).norm() / ref.norm()).item()


@register("gla", plot_x="seqlen", plot_y="ms")
def run(quick: bool, progress, providers=None) -> list[dict]:
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    if not cuda:
        print("no CUDA: CPU smoke run (fp32, one tiny shape); the numbers mean nothing", file=sys.stderr)
    shapes = (SHAPES_QUICK if quick else SHAPES_FULL) if cuda else [(1, 128, 2, 64, 64)]
    check_providers(providers, ("tilefold", "fla", "sdpa-flash"))
    provs = [p for p in _providers() if providers is None or p[0] in providers]
    use_sdpa = cuda and (providers is None or "sdpa-flash" in providers)
    records = []
    errs = {}
    for prov, mname, fn in provs:
        try:
            errs[(prov, mname)] = _errors(fn, dtype, device)
        except Exception as e:  # noqa: BLE001
            print(f"[gla bench] {prov}/{mname} error check failed: {type(e).__name__}: {e}")
    bar = progress(total=len(shapes) * (len(provs) + int(use_sdpa)) * 2, desc="gla")
    for B, T, H, K, V in shapes:
        flops_fwd = 4.0 * B * T * H * K * V
        nbytes = (3 * B * T * H * K + 2 * B * T * H * V) * torch.finfo(dtype).bits // 8
        fields = dict(batch=B, heads=H, headdim=K, headdim_v=V, seqlen=T)
        for prov, mname, fn in provs:
            for mode in ("fwd", "fwd+bwd"):
                try:
                    q, k, v, g = _inputs(B, T, H, K, V, dtype, device, grad=True)
                    if mode == "fwd":
                        call = lambda: fn(q, k, v, g)  # noqa: E731
                        fl = flops_fwd
                    else:
                        do = torch.randn(B, T, H, V, device=device, dtype=dtype)

                        def call():  # autograd.grad: no .grad accumulation timed (as the attention bench)
                            torch.autograd.grad(fn(q, k, v, g), (q, k, v, g), do)

                        fl = 3.5 * flops_fwd
                    ms = bench_ms(call)
                    me, re_ = errs.get((prov, mname), (None, None)) if mode == "fwd" else (None, None)
                    records.append(base_record("gla", prov, mode, dtype, mode_name=mname, **fields, ms=ms,
                                               tflops=tflops(fl, ms), gbps=gbps(nbytes, ms) if mode == "fwd" else None,
                                               max_err=me, rms_err=re_))
                    bar.write(f"{prov:9s} {mname:16s} {mode:8s} B{B} T{T}: {ms:8.3f} ms")
                    _partial(records)
                except Exception as e:  # noqa: BLE001
                    bar.write(f"[gla bench] {prov}/{mname}/{mode} B{B} T{T} failed: {type(e).__name__}: {e}")
                finally:
                    q = k = v = g = None
                    if cuda:
                        torch.cuda.empty_cache()
                bar.update()
        if use_sdpa:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            for mode in ("fwd", "fwd+bwd"):
                try:
                    qs, ks, vs = (torch.randn(B, H, T, K, device=device, dtype=dtype, requires_grad=True)
                                  for _ in range(3))

                    def sd():
                        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                            return F.scaled_dot_product_attention(qs, ks, vs, is_causal=True)

                    if mode == "fwd":
                        call = sd
                        fl = attention_flops(B, H, T, T, K, causal=True)
                    else:
                        do = torch.randn(B, H, T, K, device=device, dtype=dtype)

                        def call():
                            torch.autograd.grad(sd(), (qs, ks, vs), do)

                        fl = 3.5 * attention_flops(B, H, T, T, K, causal=True)
                    ms = bench_ms(call)
                    records.append(base_record("gla", "sdpa-flash", mode, dtype, mode_name="causal-softmax",
                                               **fields, ms=ms, tflops=tflops(fl, ms)))
                    bar.write(f"sdpa-flash causal           {mode:8s} B{B} T{T}: {ms:8.3f} ms")
                except Exception as e:  # noqa: BLE001
                    bar.write(f"[gla bench] sdpa-flash/{mode} failed: {type(e).__name__}: {e}")
                bar.update()
    bar.close()
    if cuda:
        records.extend(copy_records("gla", providers))
    return records
