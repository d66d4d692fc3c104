"""``python -m tilefold bench decode``: split-KV decode bandwidth beside SDPA, in the same process.

Providers: ``tilefold`` (the public ``tilefold.attention(..., num_splits=0)``: occupancy heuristic; the record
carries the chosen ``num_splits``; until 2026-12-04's tenth session the bench called ``split_kv_attention`` and skipped
the public checks), ``tilefold-kvcache`` (``tilefold.attention_with_kvcache`` on the same K / V as a full cache, its
lengths an int32 CUDA tensor made outside the timed call: what the per-sequence lengths cost), ``tilefold-paged16`` /
``tilefold-paged256`` (the same call on the same keys laid out as a paged cache of 16- / 256-key pages in a shuffled
order, ``block_table``; pool and table built outside the timed call), ``sdpa-cudnn`` and ``sdpa-flash`` (SDPA pinned to
one backend, with ``enable_gqa=True``; where a
backend refuses GQA the K/V heads are expanded *outside* the timed call and the record says ``kv_expanded: true``),
and the bandwidth ceilings ``copy`` (read + write) and ``read`` (read only, the one that matches ``gbps``).

Shapes: bf16, 32 query heads / 8 key heads, headdim 128, seqlen_q 1 and 16, no mask (SDPA's
``is_causal`` is top-left aligned, so a bottom-right causal decode mask is not comparable; for
seqlen_q = 1 they coincide anyway), batch 1..32 against seqlen_k 8k..1M with K+V at most ~17 GB.
``gbps`` = bytes of K and V read once / time (DESIGN.md §6). Up to K + V of B=4 32k the records also carry ``wall_us``
(``core.wall_us``: per call of 300 back-to-back calls, no L2 flush), the measure of the host-bound cases, where
``gbps`` (do_bench, whose L2 flush hides part of the host time) measures neither the kernel nor the wall clock.
``max_err``: max |out - fp32 reference|
at batch 1, seqlen_k 8192 of the same seqlen_q.

Without CUDA: a smoke run (fp32, tiny shapes, the tilefold providers only); the numbers mean nothing.
"""
from __future__ import annotations

import math
import statistics
import sys

import torch

from .core import base_record, bench_ms, check_providers, copy_records, gbps, register, wall_us

PROVIDERS = ("tilefold", "tilefold-kvcache", "tilefold-paged16", "tilefold-paged256", "sdpa-cudnn", "sdpa-flash")
H, HK, D = 32, 8, 128
MAX_KV_BYTES = 17 << 30
WALL_MAX_ELEMS = 2 * 4 * 32768 * 8 * 128  # wall_us for K + V up to B=4 32k (B=1 8k / 32k, B=4 8k / 32k: host-bound)


def _cases(quick: bool, cuda: bool):
    if not cuda:
        return [(1, M, N) for M in (1, 16) for N in (256, 1024)]
    if quick:
        bn = [(1, 8192), (1, 32768), (1, 131072), (1, 1 << 20), (8, 32768), (8, 131072), (32, 8192), (32, 32768)]
    else:
        bn = [(b, n) for b in (1, 4, 8, 16, 32) for n in (8192, 32768, 131072, 262144, 1 << 20)]
    out = []
    for B, N in bn:
        if 2 * B * N * HK * D * 2 <= MAX_KV_BYTES:
            out += [(B, M, N) for M in (1, 16)]
    return out


def _tilefold():
    import tilefold
    from tilefold.ops.decode import choose_num_splits

    def fn(q, k, v):  # the public call (its checks and host path timed, as SDPA's are)
        return tilefold.attention(q, k, v, num_splits=0)

    def splits(q, k):  # the count the call above uses (packed GQA rows: heads_k matters)
        return choose_num_splits(q.shape[0], q.shape[2], q.shape[1], k.shape[1], q.shape[3], q.dtype, q.device,
                                 heads_k=k.shape[2])

    return fn, splits


def _tilefold_kvcache():
    import tilefold

    lengths: dict = {}

    def fn(q, k, v):  # every cache full: the same keys as the "tilefold" provider, through the length-aware path
        key = (k.shape[0], k.shape[1], k.device)
        if key not in lengths:
            lengths[key] = torch.full((k.shape[0],), k.shape[1], dtype=torch.int32, device=k.device)
        return tilefold.attention_with_kvcache(q, k, v, cache_seqlens=lengths[key])

    return fn


def _tilefold_paged(page: int):
    """The same keys as a paged cache of ``page``-key pages (block_table), the pages in a shuffled order: copied into
    the pool and the table built once per case (outside the timed call), as an inference server's cache would be."""
    import tilefold

    state: dict = {}

    def fn(q, k, v):
        # keyed by the tensors themselves (held, so their memory is not reused): a data_ptr key matched a new tensor
        # that the allocator placed where a freed one of the same shape had been, and the call read the old pool
        # (call 93: the error check at seqlen_q 1 met the warm-up's freed keys: max_err 0.097 for a correct kernel)
        if state.get("k") is not k or state.get("v") is not v:
            state.clear()
            B, N, HK_, D_ = k.shape
            nb = -(-N // page)
            perm = torch.randperm(B * nb, device=k.device)
            pool_k = torch.zeros(B * nb, page, HK_, D_, device=k.device, dtype=k.dtype)
            pool_v = torch.zeros_like(pool_k)
            pad = nb * page - N
            kk = torch.nn.functional.pad(k, (0, 0, 0, 0, 0, pad)) if pad else k
            vv = torch.nn.functional.pad(v, (0, 0, 0, 0, 0, pad)) if pad else v
            pool_k[perm] = kk.reshape(B * nb, page, HK_, D_)
            pool_v[perm] = vv.reshape(B * nb, page, HK_, D_)
            state.update(k=k, v=v, pool=(pool_k, pool_v), table=perm.reshape(B, nb).to(torch.int32),
                         lens=torch.full((B,), N, dtype=torch.int32, device=k.device))
        pk, pv = state["pool"]
        return tilefold.attention_with_kvcache(q, pk, pv, block_table=state["table"], cache_seqlens=state["lens"])

    return fn


def _sdpa(name):
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, name)

    def fn(q, k, v, gqa=True):
        with sdpa_kernel(backend):
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               enable_gqa=gqa)
        return o.transpose(1, 2)

    return fn


def _reference(q, k, v):
    g = q.shape[2] // k.shape[2]
    qf = q.float().transpose(1, 2)
    kf = k.float().transpose(1, 2).repeat_interleave(g, 1)
    vf = v.float().transpose(1, 2).repeat_interleave(g, 1)
    s = torch.matmul(qf, kf.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return torch.matmul(torch.softmax(s, -1), vf).transpose(1, 2)


@register("decode", plot_x="seqlen_k", plot_y="gbps", ratios=("sdpa-cudnn", "sdpa-flash"))
def run(quick: bool, progress, providers=None, rounds: int = 1) -> list[dict]:
    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    if not cuda:
        print("no CUDA: CPU smoke run (fp32, tiny shapes, the tilefold providers only); the numbers mean nothing", file=sys.stderr)
    names = [p for p in (PROVIDERS if cuda else ("tilefold", "tilefold-kvcache", "tilefold-paged16"))
             if providers is None or p in providers]
    check_providers(providers, PROVIDERS)
    records: list[dict] = copy_records("decode", providers)
    fns, expand, splits_of = {}, {}, None
    for p in names:
        try:
            if p == "tilefold":
                fns[p], splits_of = _tilefold()
            elif p == "tilefold-kvcache":
                fns[p] = _tilefold_kvcache()
            elif p.startswith("tilefold-paged"):
                fns[p] = _tilefold_paged(int(p[len("tilefold-paged"):]))
            else:
                fns[p] = _sdpa("CUDNN_ATTENTION" if p == "sdpa-cudnn" else "FLASH_ATTENTION")
        except Exception as e:  # noqa: BLE001
            print(f"[{p}] unavailable: {type(e).__name__}: {e}", file=sys.stderr)
    cases = _cases(quick, cuda)
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    bar = progress(total=len(cases) * len(names) * rounds, desc="decode")
    errs: dict = {}
    failed: dict = {}
    times: dict = {}  # (B, M, N, provider) -> ms of each round, in the order measured
    extras: dict = {}
    stop = False

    def call(p, q, k, v):
        if p.startswith("tilefold"):
            return fns[p](q, k, v)
        if expand.get(p):
            return fns[p](q, k, v, gqa=False)
        return fns[p](q, k, v)

    def prep(p, q, k, v):
        """SDPA GQA support check: try enable_gqa once; else expand K/V heads (outside the timing)."""
        if p.startswith("tilefold") or p in expand:
            pass
        else:
            try:
                fns[p](q[:1, :1], k[:1, :128], v[:1, :128])
                expand[p] = False
            except Exception:  # noqa: BLE001
                expand[p] = True
                bar.write(f"[{p}] refuses enable_gqa: K/V heads expanded outside the timed call")
        if expand.get(p):
            g = q.shape[2] // k.shape[2]
            return k.repeat_interleave(g, 2), v.repeat_interleave(g, 2)
        return k, v

    # warm-up pass over the first case (untimed): the first case timed right after the compiles measured every
    # provider slower than later runs of the same shape did (calls 89-91: tilefold at B=1 8k 66-90 us by do_bench, 30 us
    # in a later process; wall_us 101 us against a host time of 63 us measured afterwards)
    if cuda and cases:
        B, M, N = cases[0]
        q = torch.randn(B, M, H, D, device=device, dtype=dtype)
        k = torch.randn(B, N, HK, D, device=device, dtype=dtype)
        v = torch.randn(B, N, HK, D, device=device, dtype=dtype)
        for p in names:
            if p in fns:
                try:
                    kk, vv = prep(p, q, k, v)
                    bench_ms(lambda: call(p, q, kk, vv))
                    wall_us(lambda: call(p, q, kk, vv))
                except Exception:  # noqa: BLE001 - reported when the case is timed
                    pass
        del q, k, v
    # rounds > 1: the whole grid again with fresh tensors (a pass's outliers are whole measurements: placement,
    # clocks), every provider of a case on the same tensors; the record keeps the median and each round's ms
    for _ in range(rounds):
        for B, M, N in cases:
            if stop:
                break
            q = torch.randn(B, M, H, D, device=device, dtype=dtype)
            k = torch.randn(B, N, HK, D, device=device, dtype=dtype)
            v = torch.randn(B, N, HK, D, device=device, dtype=dtype)
            for p in names:
                if p not in fns:
                    bar.update()
                    continue
                try:
                    if (p, M) not in errs:
                        qe, ke = q[:1], torch.randn(1, 8192 if cuda else 512, HK, D, device=device, dtype=dtype)
                        ve = torch.randn_like(ke)
                        kk, vv = prep(p, qe, ke, ve)
                        errs[(p, M)] = (call(p, qe, kk, vv).float() - _reference(qe, ke, ve)).abs().max().item()
                    kk, vv = prep(p, q, k, v)
                    ms = bench_ms(lambda: call(p, q, kk, vv))
                    extra = {}
                    if cuda and 2 * B * N * HK * D <= WALL_MAX_ELEMS:  # small cases, where host time decides
                        extra["wall_us"] = round(wall_us(lambda: call(p, q, kk, vv)), 2)
                    if p == "tilefold":
                        extra["num_splits"] = splits_of(q, k)
                    if expand.get(p):
                        extra["kv_expanded"] = True
                    times.setdefault((B, M, N, p), []).append(ms)
                    extras[(B, M, N, p)] = extra
                    del kk, vv
                except Exception as e:  # noqa: BLE001
                    if p not in failed:
                        bar.write(f"[{p}] failed, that measurement not recorded: {type(e).__name__}: "
                                  f"{str(e).strip()[:300]}")
                    failed[p] = failed.get(p, 0) + 1
                    if "illegal memory access" in str(e):
                        stop = True
                        break
                bar.update()
            del q, k, v
            if cuda and not stop:  # after an illegal memory access the context is lost: keep what was measured
                torch.cuda.empty_cache()
    for (B, M, N, p), ms_list in times.items():
        ms = float(statistics.median(ms_list))
        nbytes = 2 * B * N * HK * D * torch.empty((), dtype=dtype).element_size()
        if rounds > 1:  # the rounds that measured this case (fewer than ``rounds`` where one failed)
            extras[(B, M, N, p)]["ms_rounds"] = [round(x, 6) for x in ms_list]
        records.append(base_record("decode", p, "fwd", dtype, batch=B, heads=H, heads_k=HK, headdim=D,
                                   seqlen_q=M, seqlen_k=N, causal=False, **extras[(B, M, N, p)], ms=ms,
                                   gbps=gbps(nbytes, ms), max_err=errs[(p, M)]))
    bar.close()
    for p, n in failed.items():
        print(f"{p}: {n} measurement(s) failed", file=sys.stderr)
    return records
