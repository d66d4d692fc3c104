"""ALiBi (flash_attn's ``alibi_slopes``) on the split-KV / decode paths: ``num_splits != 1`` (the decode kernel with the
query rows of a key head packed, each packed row its own head's slope; the forward kernel's split path above
DECODE_MAX_ROWS packed rows; the combine kernel and the fused combine), KPAR, varlen, paged K / V
(``varlen_attention(block_table=)``: the decode kernel and the forward kernel reading pages in place, and gathering
first) and ``attention_with_kvcache`` / ``flash_attn_with_kvcache`` (lengths, new keys appended, left padding, cache
slots, a paged cache). Every result against a reference written out in fp64 with the bias (2x rule), on both backends
(the kernels under the interpreter on CPU); gradients through the split path's backward."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "attention"))
import attention_helpers as h  # noqa: E402

import tilefold  # noqa: E402
from tilefold.compat.flash_attn_interface import flash_attn_with_kvcache  # noqa: E402
from tilefold.ops.attention.naive import attention_ref  # noqa: E402
from tilefold.ops.decode import kernel as K  # noqa: E402
from test_kvcache import _reference as _kvcache_reference  # noqa: E402
from test_paged_varlen import _pool, _reference as _paged_reference  # noqa: E402

BACKENDS = ["torch", "triton"]


def _slopes(B, H, per_batch, device="cpu"):
    return h.alibi_slopes(B, H, per_batch, device)


def _err(a, b):
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


def _check(out, lse, ref, rlse, low, label):
    """2x rule on out; lse to 1e-4 where finite (the same rows infinite)"""
    assert _err(out, ref) <= 2 * _err(low, ref) + 1e-5, (label, _err(out, ref), _err(low, ref))
    fin = torch.isfinite(rlse)
    assert torch.equal(fin, torch.isfinite(lse)), label
    assert _err(lse[fin], rlse[fin]) <= 1e-4, (label, _err(lse[fin], rlse[fin]))


SPLIT_CASES = [
    h.Case(2, 1, 77, 8, 2, 32, causal=True),  # GQA decode: 4 packed rows of 4 heads, each its own slope
    h.Case(1, 5, 70, 4, 4, 16, window=(8, 2), softcap=5.0),  # 5 positions, window + softcap
    h.Case(2, 3, 40, 4, 1, 24),  # MQA, 12 packed rows, no mask: the unmasked middle tiles carry the bias too
    h.Case(1, 70, 90, 4, 1, 16, causal=True),  # 280 packed rows > DECODE_MAX_ROWS: the forward kernel's split path
]


@pytest.mark.parametrize("S", [2, 3, 0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=h.dtype_id)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("c", SPLIT_CASES, ids=h.case_id)
def test_alibi_num_splits_cpu(c, backend, dtype, S):
    """out, lse and dq / dk / dv (the backward on the merged state) under the 2x rule, slopes per (batch, head)"""
    slopes = _slopes(c.B, c.H, True)
    kept = slopes.clone()
    h.check_case(c, dtype, backend=backend, grad=True, device="cpu", opts=dict(alibi_slopes=slopes, num_splits=S))
    assert torch.equal(slopes, kept)


@pytest.mark.parametrize("backend", BACKENDS)
def test_alibi_split_inference_cpu(backend):
    """the split paths' inference branch (no input requires grad: no autograd node), batched and varlen"""
    torch.manual_seed(8)
    q, k, v = torch.randn(2, 3, 8, 16), torch.randn(2, 50, 2, 16), torch.randn(2, 50, 2, 16)
    sl = _slopes(2, 8, True)
    ref, rlse = attention_ref(q, k, v, causal=True, alibi_slopes=sl)
    low, _ = attention_ref(q, k, v, causal=True, alibi_slopes=sl, compute_dtype=torch.float32)
    with tilefold.use_backend(backend):
        o, l = tilefold.attention(q, k, v, causal=True, num_splits=3, alibi_slopes=sl, return_lse=True)
        cu_q = torch.tensor([0, 3, 6], dtype=torch.int32)
        cu_k = torch.tensor([0, 50, 100], dtype=torch.int32)
        vo, vl = tilefold.varlen_attention(q.reshape(6, 8, 16), k.reshape(100, 2, 16), v.reshape(100, 2, 16), cu_q,
                                           cu_k, 3, 50, causal=True, num_splits=3, alibi_slopes=sl, return_lse=True)
    _check(o, l, ref, rlse, low, "batched")
    _check(vo, vl, ref.reshape(6, 8, 16), rlse.permute(1, 0, 2).reshape(8, 6), low.reshape(6, 8, 16), "varlen")


def test_alibi_slopes_on_another_device_raise():
    """slopes on another device than q: a ValueError at each public function (meta stands in for a GPU here)"""
    q = torch.randn(2, 1, 4, 16)
    kc = torch.randn(2, 8, 2, 16)
    bad = torch.ones(4, device="meta")
    cu = torch.tensor([0, 1, 2], dtype=torch.int32)
    calls = [lambda: tilefold.attention(q, kc, kc, alibi_slopes=bad, num_splits=2),
             lambda: tilefold.varlen_attention(q[:, 0], kc[0], kc[0], cu, torch.tensor([0, 4, 8], dtype=torch.int32),
                                               1, 4, alibi_slopes=bad),
             lambda: tilefold.attention_with_kvcache(q, kc, kc.clone(), alibi_slopes=bad)]
    for call in calls:
        with pytest.raises(ValueError, match="alibi_slopes: expected device"):
            call()


@pytest.mark.parametrize("combine", ["kernel", "fused"])
def test_alibi_decode_combine_modes_cpu(monkeypatch, combine):
    """the same states folded by the combine kernel or by the last split program: both equal the reference; heads
    broadcast slopes (one row for the batch: row stride 0)"""
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", combine)
    K.clear_plans()
    h.check_case(h.Case(2, 2, 61, 8, 2, 16, causal=True), torch.float16, backend="triton", device="cpu",
                 opts=dict(alibi_slopes=_slopes(2, 8, False), num_splits=3))


def test_alibi_decode_plans_follow_the_slopes_cpu():
    """one decode shape called with (heads,) slopes (row stride 0), (batch, heads) slopes, none, then (heads,) again:
    each call its own plan (the plan key holds the slopes' presence and row stride), each equal to its reference"""
    from tilefold.ops.decode import split_kv_attention
    K.clear_plans()
    torch.manual_seed(6)
    q, k, v = (torch.randn(2, L, hh, 16).half() for L, hh in ((2, 8), (45, 2), (45, 2)))
    for sl in (_slopes(2, 8, False).expand(2, 8), _slopes(2, 8, True), None, _slopes(2, 8, False).expand(2, 8)):
        ref, rlse = attention_ref(q, k, v, causal=True, alibi_slopes=sl)
        low, _ = attention_ref(q, k, v, causal=True, alibi_slopes=sl, compute_dtype=torch.float16)
        with tilefold.use_backend("triton"):
            o, l = split_kv_attention(q, k, v, num_splits=3, softmax_scale=0.25, window=(-1, 0), softcap=0.0,
                                      alibi=sl)
        _check(o, l, ref, rlse, low, "slopes" if sl is not None else "none")
    assert len(K._PLANS) == 3


KPAR_CASES = [  # (B, M, N, H, HK, D, window (left, right), softcap)
    (2, 1, 113, 4, 2, 32, (-1, -1), 0.0),  # the last chunk ends inside a tile
    (1, 5, 70, 2, 2, 16, (8, 0), 0.0),  # causal + left window by position
    (2, 3, 77, 8, 2, 32, (-1, 0), 5.0),  # softcap, causal, 12 packed rows
]


@pytest.mark.parametrize("S", [1, 3])
@pytest.mark.parametrize("case", KPAR_CASES, ids=str)
def test_alibi_kpar_cpu(monkeypatch, case, S):
    """keys in parallel (one chunk per warp, forced): the bias by each chunk's own key indices"""
    from tilefold.ops.decode import split_kv_attention
    monkeypatch.setenv("TILEFOLD_DECODE_KPAR", "1")
    K.clear_plans()
    B, M, N, H, HK, D, window, cap = case
    torch.manual_seed(N + M)
    q, k, v = (torch.randn(B, L, hh, D).half() for L, hh in ((M, H), (N, HK), (N, HK)))
    sl = _slopes(B, H, True)
    left, right = window
    kw = dict(causal=right == 0, window_size=(left, -1 if right == 0 else right), softcap=cap,
              alibi_slopes=sl)
    ref, rlse = attention_ref(q, k, v, **kw)
    low, _ = attention_ref(q, k, v, compute_dtype=torch.float16, **kw)
    with tilefold.use_backend("triton"):
        o, l = split_kv_attention(q, k, v, num_splits=S, softmax_scale=D ** -0.5, window=window, softcap=cap,
                                  alibi=sl)
    assert K._PLANS and all(p.cons["KPAR"] == K.KPAR_W and p.cons["HAS_ALIBI"] for p in K._PLANS.values())
    _check(o, l, ref, rlse, low, f"kpar S={S}")


@pytest.mark.parametrize("S", [3, 0])
@pytest.mark.parametrize("backend", BACKENDS)
def test_alibi_varlen_splits_cpu(backend, S):
    """varlen through split-KV: each sequence its own slopes and bottom-right corner, an empty sequence, gradients"""
    from test_varlen import check_varlen
    check_varlen([1, 0, 3, 2], [40, 9, 0, 70], 8, 2, 32, torch.float32,
                 dict(causal=True, alibi_slopes=_slopes(4, 8, True), num_splits=S), backend, "cpu")
    check_varlen([70, 2], [80, 33], 4, 1, 16, torch.float16,  # 280 packed rows: the forward kernel's split path
                 dict(alibi_slopes=_slopes(2, 4, False), num_splits=S), backend, "cpu")


# ---------------------------------------------------------------------------------------------------------------------
# paged K / V (varlen_attention(block_table=))


PAGED_CASES = {  # (lens_q, lens_k, H, HK, D, page, pages per sequence, mask)
    "decode_page5_gqa_causal": ([1, 2, 1], [0, 17, 45], 8, 2, 32, 5, 9, dict(causal=True)),
    "decode_page16_window_softcap": ([3, 2], [40, 30], 4, 2, 16, 16, 3, dict(causal=True, window_size=(7, 0),
                                                                            softcap=5.0)),
    "prefill_page16_causal": ([70, 3], [80, 96], 4, 1, 16, 16, 6, dict(causal=True)),  # 280 packed rows
}


@pytest.mark.parametrize("backend, gather", [("torch", False), ("triton", False), ("triton", True)],
                         ids=["torch", "triton-in_place", "triton-gather_first"])  # the torch path always gathers
@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("name", list(PAGED_CASES))
def test_alibi_paged_varlen_cpu(monkeypatch, name, backend, splits, gather):
    """the kernels reading pages in place (decode kernel, forward kernel) and the forward kernel's calls gathering
    first (PAGED_GATHER_MAX_BYTES): the same bias per sequence"""
    from tilefold.ops.decode import kvcache
    monkeypatch.setattr(kvcache, "PAGED_GATHER_MAX_BYTES", (1 << 30) if gather else 0)
    lens_q, lens_k, H, HK, D, page, nb, mask = PAGED_CASES[name]
    B = len(lens_q)
    torch.manual_seed(21)
    q = torch.randn(sum(lens_q), H, D).half()
    pool_k, pool_v, table = _pool(B, nb, page, HK, D, 3, torch.float16, 5)  # V with its own page / row strides
    sl = _slopes(B, H, True)
    ref, rlse = _paged_reference(q, pool_k, pool_v, table, lens_q, lens_k, slopes=sl, **mask)
    low, _ = _paged_reference(q, pool_k, pool_v, table, lens_q, lens_k, compute_dtype=torch.float16, slopes=sl,
                              **mask)
    cu_q = torch.tensor([0] + torch.tensor(lens_q).cumsum(0).tolist(), dtype=torch.int32)
    cu_k = torch.tensor([0] + torch.tensor(lens_k).cumsum(0).tolist(), dtype=torch.int32)
    with tilefold.use_backend(backend):
        out, lse = tilefold.varlen_attention(q, pool_k, pool_v, cu_q, cu_k, max(lens_q), max(lens_k),
                                             block_table=table, num_splits=splits, return_lse=True,
                                             alibi_slopes=sl, **mask)
    _check(out, lse, ref, rlse, low, name)


# ---------------------------------------------------------------------------------------------------------------------
# attention_with_kvcache


def _kv_reference(q, k_cache, v_cache, k, v, seqlens, slopes, pads=None, slots=None, compute_dtype=torch.float64,
                  **mask):
    """test_kvcache's reference (out, lse) with per-sequence slopes and cache slots"""
    return _kvcache_reference(q, k_cache, v_cache, k, v, seqlens, compute_dtype=compute_dtype, pads=pads, slots=slots,
                              slopes=slopes, **mask)[:2]


KV_CASES = {  # B, M, H, HK, D, L, S_new, lens, pads, slots, mask
    "decode_gqa_causal": (3, 1, 8, 2, 32, 70, 1, [0, 37, 69], None, None, dict(causal=True)),
    "append4_window_softcap_leftpad": (2, 4, 4, 4, 16, 50, 4, [5, 46], [2, 20], None,
                                       dict(causal=True, window_size=(9, 0), softcap=4.0)),
    "no_new_slots_mqa": (2, 3, 4, 1, 24, 33, 0, [33, 12], None, [2, 0], {}),
    "chunk_forward_kernel_leftpad": (2, 70, 4, 1, 16, 90, 70, [0, 20], [0, 13], None, dict(causal=True)),
}


@pytest.mark.parametrize("splits", [1, 3, 0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(KV_CASES))
def test_alibi_kvcache_cpu(name, backend, dtype, splits):
    B, M, H, HK, D, L, S_new, lens, pads, slots, mask = KV_CASES[name]
    torch.manual_seed(0)
    n_rows = B if slots is None else 3
    q = torch.randn(B, M, H, D, dtype=dtype)
    k_cache, v_cache = (torch.randn(n_rows, L, HK, D, dtype=dtype) for _ in range(2))
    k, v = ((torch.randn(B, S_new, HK, D, dtype=dtype) for _ in range(2)) if S_new else (None, None))
    sl = _slopes(B, H, True)
    ref, rlse = _kv_reference(q, k_cache, v_cache, k, v, lens, sl, pads, slots, **mask)
    low, _ = _kv_reference(q, k_cache, v_cache, k, v, lens, sl, pads, slots, compute_dtype=dtype, **mask)
    kw = dict(cache_seqlens=torch.tensor(lens, dtype=torch.int32), num_splits=splits, return_lse=True,
              alibi_slopes=sl, **mask)
    if pads is not None:
        kw["cache_leftpad"] = torch.tensor(pads, dtype=torch.int32)
    if slots is not None:
        kw["cache_batch_idx"] = torch.tensor(slots, dtype=torch.int32)
    with tilefold.use_backend(backend):
        out, lse = tilefold.attention_with_kvcache(q, k_cache, v_cache, k, v, **kw)
    _check(out, lse, ref, rlse, low, name)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("M", [1, 70], ids=["decode_kernel", "forward_kernel"])
def test_alibi_kvcache_paged_cpu(backend, M):
    """a paged cache with new keys appended into its pages: the decode kernel and the forward kernel (70 x 4 packed
    rows) against the same cache written out contiguously"""
    B, H, HK, D, page, nb = 2, 4, 1, 16, 8, 12
    lens = [3, 95 - M]
    torch.manual_seed(2)
    q = torch.randn(B, M, H, D).half()
    k_new, v_new = (torch.randn(B, M, HK, D).half() for _ in range(2))
    pool_k, pool_v, table = _pool(B, nb, page, HK, D, 2, torch.float16, 9)
    contig_k = pool_k[table.long()].reshape(B, nb * page, HK, D)
    contig_v = pool_v[table.long()].reshape(B, nb * page, HK, D)
    sl = _slopes(B, H, False)
    mask = dict(causal=True)
    ref, rlse = _kv_reference(q, contig_k, contig_v, k_new, v_new, lens, sl.expand(B, H), **mask)
    low, _ = _kv_reference(q, contig_k, contig_v, k_new, v_new, lens, sl.expand(B, H), compute_dtype=torch.float16,
                           **mask)
    with tilefold.use_backend(backend):
        out, lse = tilefold.attention_with_kvcache(q, pool_k, pool_v, k_new, v_new, block_table=table,
                                                   cache_seqlens=torch.tensor(lens, dtype=torch.int32),
                                                   return_lse=True, alibi_slopes=sl, **mask)
    _check(out, lse, ref, rlse, low, f"paged M={M}")


def test_alibi_flash_attn_with_kvcache_compat_cpu():
    """the compat function passes alibi_slopes through (same result as tilefold's); the caller's slopes unchanged"""
    torch.manual_seed(4)
    q = torch.randn(2, 1, 4, 16)
    kc, vc = torch.randn(2, 30, 2, 16), torch.randn(2, 30, 2, 16)
    sl = _slopes(2, 4, True)
    kept = sl.clone()
    lens = torch.tensor([9, 30], dtype=torch.int32)
    out, lse = flash_attn_with_kvcache(q, kc, vc, cache_seqlens=lens, causal=True, alibi_slopes=sl,
                                       return_softmax_lse=True)
    o2, l2 = tilefold.attention_with_kvcache(q, kc, vc, cache_seqlens=lens, causal=True, alibi_slopes=sl,
                                             return_lse=True)
    assert torch.equal(out, o2) and torch.equal(lse, l2) and torch.equal(sl, kept)
    plain = tilefold.attention_with_kvcache(q, kc, vc, cache_seqlens=lens, causal=True)
    assert (out - plain).abs().max() > 0.1  # the bias is applied


@pytest.mark.parametrize("bad, what", [(torch.ones(4, dtype=torch.float64), "float64"), (torch.ones(3), "shape"),
                                       (torch.ones(1, 4), "batch row"), ([1.0] * 4, "list")])
def test_alibi_kvcache_bad_slopes_raise(bad, what):
    q = torch.randn(2, 1, 4, 16)
    kc = torch.randn(2, 8, 2, 16)
    with pytest.raises(ValueError, match="alibi_slopes"):
        tilefold.attention_with_kvcache(q, kc, kc.clone(), alibi_slopes=bad)


@pytest.mark.gpu
@pytest.mark.parametrize("M,S_new,splits", [(1, 1, 0), (4, 4, 0), (1, 1, 1), (64, 64, 0)],
                         ids=["decode", "spec4", "decode_unsplit", "chunk64"])
@pytest.mark.parametrize("paged", [False, True], ids=["", "paged"])
def test_alibi_kvcache_gpu(M, S_new, splits, paged):
    """bf16 hd128, 32 / 8 heads, long caches: the decode kernel (splits, KPAR / descriptor tiles as the plan picks) and
    the forward kernel (64 x 4 = 256 packed rows: decode kernel's 64-row tile; chunk of 64 at G=4)"""
    B, H, HK, D, L = 3, 32, 8, 128, 4096 + 64
    torch.manual_seed(M + 7 * paged)
    dev = "cuda"
    lens = [0, 1000, 4096 - 3]
    q = torch.randn(B, M, H, D, device=dev, dtype=torch.bfloat16)
    kc, vc = (torch.randn(B, L, HK, D, device=dev, dtype=torch.bfloat16) for _ in range(2))
    k, v = (torch.randn(B, S_new, HK, D, device=dev, dtype=torch.bfloat16) for _ in range(2))
    sl = _slopes(B, H, True, dev) / 16  # realistic magnitudes: the bias spans the cache
    mask = dict(causal=True)
    ref, rlse = _kv_reference(q, kc, vc, k, v, lens, sl, **mask)
    low, _ = _kv_reference(q, kc, vc, k, v, lens, sl, compute_dtype=torch.bfloat16, **mask)
    kw = dict(cache_seqlens=torch.tensor(lens, dtype=torch.int32, device=dev), num_splits=splits, return_lse=True,
              alibi_slopes=sl, **mask)
    if paged:
        page = 256
        nb = L // page + 1
        perm = torch.randperm(B * nb, device=dev).reshape(B, nb).to(torch.int32)
        pool_k = torch.zeros(B * nb, page, HK, D, device=dev, dtype=torch.bfloat16)
        pool_v = torch.zeros_like(pool_k)
        flat_k = torch.zeros(B, nb * page, HK, D, device=dev, dtype=torch.bfloat16)
        flat_v = torch.zeros_like(flat_k)
        flat_k[:, :L], flat_v[:, :L] = kc, vc
        pool_k[perm.long()] = flat_k.reshape(B, nb, page, HK, D)
        pool_v[perm.long()] = flat_v.reshape(B, nb, page, HK, D)
        out, lse = tilefold.attention_with_kvcache(q, pool_k, pool_v, k, v, block_table=perm, **kw)
    else:
        out, lse = tilefold.attention_with_kvcache(q, kc, vc, k, v, **kw)
    _check(out, lse, ref, rlse, low, f"gpu M={M} paged={paged}")


@pytest.mark.gpu
@pytest.mark.parametrize("S", [0, 4])
@pytest.mark.parametrize("c", [h.Case(2, 1, 8192 + 5, 32, 8, 128, causal=True),
                               h.Case(2, 16, 8192 + 5, 32, 8, 128, causal=True),
                               h.Case(1, 300, 4096, 16, 16, 128, causal=True)], ids=h.case_id)
def test_alibi_num_splits_gpu(c, S):
    """split-KV with ALiBi on the GPU, gradients through the backward: decode (KPAR / the descriptor tiles), 64-row
    tiles, the forward kernel's split path"""
    h.check_case(c, torch.bfloat16, grad=True, device="cuda",
                 opts=dict(alibi_slopes=_slopes(c.B, c.H, True, "cuda") / 16, num_splits=S))


# ---------------------------------------------------------------------------------------------------------------------
# partial attention: the ALiBi distance in global positions, so merged partial states equal the whole attention


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [(17, 45, 4, 2, dict(causal=True)), (20, 9, 2, 1, dict(causal=True)),
                                  (3, 45, 4, 4, dict(window_size=(5, 2), softcap=5.0)), (17, 20, 2, 2, {})],
                         ids=["causal_gqa", "q_longer_mqa", "window_softcap", "full"])
def test_alibi_partial_states_merge_to_full_cpu(backend, case):
    """keys cut into ranges, a query range of the rows, each range's state by partial_attention with per-batch
    slopes, merged by merge_states: out / lse and the gradients of q, k, v (through the merge) under the 2x rule
    against the whole attention with ALiBi"""
    from tilefold.ops.decode import partial_attention
    from tilefold.ops.merge import merge_states
    M, N, H, HK, opts = case
    B, D = 2, 16
    torch.manual_seed(M * N)
    q, k, v = torch.randn(B, M, H, D), torch.randn(B, N, HK, D), torch.randn(B, N, HK, D)
    sl = _slopes(B, H, True)
    qa, qb = (1, M - 1) if M > 2 else (0, M)
    cuts = [0, 4, N // 2, N - 1, N] if N > 5 else [0, N]
    dout = torch.randn(B, qb - qa, H, D)

    def grads(out, xs):
        return torch.autograd.grad(out, xs, dout.to(out.dtype))

    res = {}
    for dt in (torch.float64, torch.float32):  # the truth, and the same computation in the input precision
        xs = [t.to(dt).requires_grad_() for t in (q, k, v)]
        o, l = attention_ref(*xs, compute_dtype=dt, alibi_slopes=sl, **opts)
        res[dt] = (o[:, qa:qb], l[:, :, qa:qb].float() if dt != torch.float64 else l[:, :, qa:qb],
                   *grads(o[:, qa:qb], xs))
    xs = [t.clone().requires_grad_() for t in (q, k, v)]
    with tilefold.use_backend(backend):
        states = [partial_attention(xs[0][:, qa:qb], xs[1][:, a:b], xs[2][:, a:b], q_start=qa, k_start=a,
                                    seqlen_q_total=M, seqlen_k_total=N, alibi_slopes=sl, **opts)
                  for a, b in zip(cuts[:-1], cuts[1:])]
        o, l = merge_states(torch.stack([s[0] for s in states]), torch.stack([s[1] for s in states]))
        g = grads(o, xs)
    ref, low = res[torch.float64], res[torch.float32]
    for name, a, r, lo in zip(("out", "lse", "dq", "dk", "dv"), (o, l) + g, ref, low):
        fin = torch.isfinite(r)
        assert torch.equal(fin, torch.isfinite(a)), name
        assert _err(a[fin], r[fin]) <= 2 * _err(lo[fin], r[fin]) + 1e-5, (name, _err(a[fin], r[fin]))
