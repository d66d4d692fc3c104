"""attention_with_kvcache (and the compat flash_attn_with_kvcache): a padded cache with per-sequence lengths, new keys
appended in place, rotary, masks aligned to each sequence's length; against a reference written out per sequence in
fp64 (2x rule), on both backends (the kernels under the interpreter on CPU)."""
import math

import pytest
import torch

import tilefold
from tilefold.compat.flash_attn_interface import flash_attn_with_kvcache
from tilefold.ops.attention.naive import attention_ref

BACKENDS = ["torch", "triton"]


def _rotary_ref(x, cos, sin, pos, interleaved):
    """rotary by the definition, fp64: pair (a, b) at angle t -> (a cos t - b sin t, b cos t + a sin t)"""
    x = x.double().clone()
    half = cos.shape[1]
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            c, s = cos[pos[b][i]].double(), sin[pos[b][i]].double()
            if interleaved:
                a, bb = x[b, i, :, 0:2 * half:2].clone(), x[b, i, :, 1:2 * half:2].clone()
                x[b, i, :, 0:2 * half:2] = a * c - bb * s
                x[b, i, :, 1:2 * half:2] = bb * c + a * s
            else:
                a, bb = x[b, i, :, :half].clone(), x[b, i, :, half:2 * half].clone()
                x[b, i, :, :half] = a * c - bb * s
                x[b, i, :, half:2 * half] = bb * c + a * s
    return x


def _reference(q, k_cache, v_cache, k, v, seqlens, compute_dtype=torch.float64, rotary=None, pads=None, slots=None,
               slopes=None, **mask):
    """(out, lse, k_cache', v_cache') by the semantics: rotate, write the new keys at seqlens[b] + i of cache row
    slots[b] (or b), attend each sequence to its first seqlens[b] + seqlen_new keys (from pads[b] on: a left-padded
    cache), with its row of the (batch, heads) ALiBi ``slopes``"""
    kc, vc = k_cache.clone(), v_cache.clone()
    B, M = q.shape[:2]
    S_new = 0 if k is None else k.shape[1]
    qr = q
    if rotary is not None:
        cos, sin, inter = rotary
        L = k_cache.shape[1]  # flash_attn: a window edge >= seqlen_cache is no window
        windowed = mask.get("causal", False) or any(0 <= w < L for w in mask.get("window_size", (-1, -1)))
        qpos = [[seqlens[b] + (i if windowed else 0) for i in range(M)] for b in range(B)]
        qr = _rotary_ref(q, cos, sin, qpos, inter).to(q.dtype)
        if k is not None:
            k = _rotary_ref(k, cos, sin, [[seqlens[b] + i for i in range(S_new)] for b in range(B)], inter).to(k.dtype)
    rows = slots if slots is not None else list(range(B))
    for b in range(B):
        if S_new:
            kc[rows[b], seqlens[b]:seqlens[b] + S_new] = k[b]
            vc[rows[b], seqlens[b]:seqlens[b] + S_new] = v[b]
    outs, lses = [], []
    for b in range(B):
        n, r = seqlens[b] + S_new, rows[b]
        lo = 0 if pads is None else pads[b]
        sb = None if slopes is None else slopes[b:b + 1]
        o, l = attention_ref(qr[b:b + 1], kc[r:r + 1, lo:n], vc[r:r + 1, lo:n], compute_dtype=compute_dtype,
                             alibi_slopes=sb, **mask)
        outs.append(o)
        lses.append(l)
    return torch.cat(outs), torch.cat(lses), kc, vc


def _err(a, b):
    return (a.double() - b.double()).abs().max().item()


CASES = {
    "decode_gqa_causal": dict(B=3, M=1, H=8, HK=2, D=32, L=70, S_new=1, lens=[0, 37, 69], causal=True),
    "append4_window_softcap": dict(B=2, M=4, H=4, HK=4, D=16, L=50, S_new=4, lens=[5, 46], causal=True,
                                   window_size=(9, 0), softcap=4.0),
    "no_new_full_mqa": dict(B=2, M=3, H=4, HK=1, D=24, L=33, S_new=0, lens=[33, 12]),
    "prefill_chunk_rotary": dict(B=2, M=20, H=2, HK=1, D=32, L=64, S_new=20, lens=[0, 30], causal=True,
                                 rotary=(12, True)),
    # 70 x 4 = 280 packed rows > DECODE_MAX_ROWS: the forward kernel (split or not), not the decode kernel
    "chunk_forward_kernel": dict(B=2, M=70, H=4, HK=1, D=16, L=90, S_new=70, lens=[0, 20], causal=True),
    "rotary_window_past_cache": dict(B=2, M=3, H=2, HK=2, D=16, L=40, S_new=3, lens=[7, 19], window_size=(40, -1),
                                     rotary=(8, True)),
    "rotary_neox_noncausal": dict(B=2, M=2, H=2, HK=2, D=16, L=40, S_new=2, lens=[7, 19], rotary=(16, False)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("splits", [1, 3, 0])
def test_against_reference(backend, dtype, name, splits):
    c = dict(CASES[name])
    B, M, H, HK, D, L, S_new, lens = (c.pop(x) for x in ("B", "M", "H", "HK", "D", "L", "S_new", "lens"))
    rot = c.pop("rotary", None)
    torch.manual_seed(0)
    q = torch.randn(B, M, H, D, dtype=dtype)
    k_cache = torch.randn(B, L, HK, D, dtype=dtype)
    v_cache = torch.randn(B, L, HK, D, dtype=dtype)
    k = torch.randn(B, S_new, HK, D, dtype=dtype) if S_new else None
    v = torch.randn(B, S_new, HK, D, dtype=dtype) if S_new else None
    rotary = None
    kw = {}
    if rot is not None:
        rd, inter = rot
        ang = torch.arange(L)[:, None] * (10000.0 ** (-torch.arange(rd // 2) / (rd // 2)))[None, :]
        rotary = (torch.cos(ang).to(dtype), torch.sin(ang).to(dtype), inter)
        kw = dict(rotary_cos=rotary[0], rotary_sin=rotary[1], rotary_interleaved=inter)
    q0 = q.clone()
    ref, rlse, kc_ref, vc_ref = _reference(q, k_cache, v_cache, k, v, lens, rotary=rotary, **c)
    low, _, _, _ = _reference(q, k_cache, v_cache, k, v, lens, compute_dtype=dtype, rotary=rotary, **c)
    with tilefold.use_backend(backend):
        out, lse = tilefold.attention_with_kvcache(q, k_cache, v_cache, k, v,
                                                   cache_seqlens=torch.tensor(lens, dtype=torch.int32),
                                                   num_splits=splits, return_lse=True, **c, **kw)
    assert torch.equal(q, q0)  # q is not rotated in place
    # the cache now holds the (rotated) new keys at their positions and nothing else changed
    tol = 0 if rot is None else 2 * torch.finfo(dtype).eps
    assert _err(k_cache, kc_ref) <= tol and torch.equal(v_cache, vc_ref.to(dtype))
    assert _err(out, ref) <= 2 * _err(low, ref) + 1e-5
    fin = torch.isfinite(rlse)
    assert torch.equal(fin, torch.isfinite(lse)) and _err(lse[fin], rlse[fin]) <= 1e-4


LEFTPAD_CASES = {  # a CASES entry and each sequence's left padding (<= its filled length)
    "decode_gqa_causal": [0, 10, 69],  # the last sequence: only its new key is left
    "append4_window_softcap": [5, 20],
    "prefill_chunk_rotary": [0, 29],
    "chunk_forward_kernel": [0, 13],  # 280 packed rows: the forward kernel
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("name", list(LEFTPAD_CASES))
@pytest.mark.parametrize("splits", [1, 3, 0])
def test_left_padded_cache(backend, dtype, name, splits):
    """cache_leftpad: sequence b attends to cache positions [pad_b, cache_seqlens_b + seqlen_new), the new keys land
    at cache_seqlens_b, the masks align to the end (a pad removes keys, it does not move the queries) and rotary
    positions stay the cache positions -- flash_attn's semantics; against the fp64 reference (2x rule)"""
    c = dict(CASES[name])
    B, M, H, HK, D, L, S_new, lens = (c.pop(x) for x in ("B", "M", "H", "HK", "D", "L", "S_new", "lens"))
    rot = c.pop("rotary", None)
    pads = LEFTPAD_CASES[name]
    torch.manual_seed(3)
    q = torch.randn(B, M, H, D, dtype=dtype)
    k_cache, v_cache = torch.randn(B, L, HK, D, dtype=dtype), torch.randn(B, L, HK, D, dtype=dtype)
    k = torch.randn(B, S_new, HK, D, dtype=dtype) if S_new else None
    v = torch.randn(B, S_new, HK, D, dtype=dtype) if S_new else None
    rotary, kw = None, {}
    if rot is not None:
        rd, inter = rot
        ang = torch.arange(L)[:, None] * (10000.0 ** (-torch.arange(rd // 2) / (rd // 2)))[None, :]
        rotary = (torch.cos(ang).to(dtype), torch.sin(ang).to(dtype), inter)
        kw = dict(rotary_cos=rotary[0], rotary_sin=rotary[1], rotary_interleaved=inter)
    ref, rlse, kc_ref, vc_ref = _reference(q, k_cache, v_cache, k, v, lens, rotary=rotary, pads=pads, **c)
    low, _, _, _ = _reference(q, k_cache, v_cache, k, v, lens, compute_dtype=dtype, rotary=rotary, pads=pads, **c)
    pad_t = torch.tensor(pads, dtype=torch.int32)
    with tilefold.use_backend(backend):
        out, lse = tilefold.attention_with_kvcache(q, k_cache, v_cache, k, v,
                                                   cache_seqlens=torch.tensor(lens, dtype=torch.int32),
                                                   cache_leftpad=pad_t, num_splits=splits, return_lse=True, **c, **kw)
    assert torch.equal(pad_t, torch.tensor(pads, dtype=torch.int32))
    tol = 0 if rot is None else 2 * torch.finfo(dtype).eps
    assert _err(k_cache, kc_ref) <= tol and torch.equal(v_cache, vc_ref.to(dtype))
    assert _err(out, ref) <= 2 * _err(low, ref) + 1e-5
    fin = torch.isfinite(rlse)
    assert torch.equal(fin, torch.isfinite(lse)) and _err(lse[fin], rlse[fin]) <= 1e-4


@pytest.mark.parametrize("M", [1, 70], ids=["decode_kernel", "forward_kernel"])
def test_left_pad_with_slots_and_clamping(M):
    """cache_leftpad with cache_batch_idx (the pad is per sequence, the slot picks the cache row); on the kernels a
    pad past the sequence's length (a CUDA tensor is not checked on the host; here the inner function) clamps to
    it: no keys, output 0 and lse -inf, never a read before the row"""
    from tilefold.ops.decode import kvcache
    torch.manual_seed(4)
    kc, vc = torch.randn(3, 24, 1, 16), torch.randn(3, 24, 1, 16)
    q = torch.randn(2, M, 4, 16)
    slots = torch.tensor([2, 0], dtype=torch.int32)
    with tilefold.use_backend("triton"):
        out = tilefold.attention_with_kvcache(q, kc, vc, cache_seqlens=torch.tensor([20, 9], dtype=torch.int32),
                                              cache_batch_idx=slots,
                                              cache_leftpad=torch.tensor([6, 0], dtype=torch.int32))
        bad, lse = kvcache._attend(q, kc, vc, torch.tensor([20, 9], dtype=torch.int32), slots, 0.25, (-1, -1), 0.0, 1,
                                   None, torch.tensor([21, -3], dtype=torch.int32))
    want0, _ = attention_ref(q[:1], kc[2:3, 6:20], vc[2:3, 6:20])
    want1, _ = attention_ref(q[1:], kc[0:1, :9], vc[0:1, :9])
    assert _err(out[:1], want0) < 1e-5 and _err(out[1:], want1) < 1e-5
    assert torch.equal(bad[0], torch.zeros_like(bad[0])) and bool(torch.isneginf(lse[0]).all())
    assert _err(bad[1:], want1) < 1e-5  # a negative pad is 0


@pytest.mark.parametrize("bad, msg, exc", [
    (dict(cache_leftpad=torch.tensor([0, 4], dtype=torch.int32)), "cache_leftpad: expected values <= cache_seqlens",
     ValueError),
    (dict(cache_leftpad=torch.tensor([0, 2])), "cache_leftpad: expected an int32 tensor", ValueError),
    (dict(cache_leftpad=torch.tensor([0], dtype=torch.int32)), "cache_leftpad: expected an int32 tensor", ValueError),
    (dict(cache_leftpad=torch.tensor([0, -1], dtype=torch.int32)), "cache_leftpad: expected values in", ValueError),
    (dict(cache_leftpad=torch.tensor([0, 1], dtype=torch.int32), block_table=torch.tensor([[0], [1]], dtype=torch.int32)),
     "paged cache has no left padding", NotImplementedError),
    (dict(cache_leftpad=torch.tensor([0, 1], dtype=torch.int32), cache_seqlens=-1), "cache_seqlens: expected",
     ValueError),
    (dict(cache_leftpad=torch.tensor([0, 1], dtype=torch.int32), cache_seqlens=torch.tensor([3, 4, 5], dtype=torch.int32)),
     "cache_seqlens: expected", ValueError),
])
def test_left_pad_bad_input_raises(bad, msg, exc):
    """(cache_seqlens' own checks come first: a bad cache_seqlens is named, not blamed on cache_leftpad)"""
    q = torch.randn(2, 1, 4, 16)
    k_cache, v_cache = torch.randn(2, 30, 2, 16), torch.randn(2, 30, 2, 16)
    before = k_cache.clone()
    with pytest.raises(exc, match=msg):
        tilefold.attention_with_kvcache(q, k_cache, v_cache, torch.randn(2, 1, 2, 16), torch.randn(2, 1, 2, 16),
                                        **dict(dict(cache_seqlens=3), **bad))
    assert torch.equal(k_cache, before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_masks_align_to_each_sequence_length(backend):
    """causal with seqlen_q > 1 and different lengths: query i of sequence b sees keys up to
    len_b - seqlen_q + i; a sequence whose window holds no key gets out 0, lse -inf"""
    torch.manual_seed(1)
    q = torch.randn(3, 5, 2, 16)
    k_cache, v_cache = torch.randn(3, 40, 2, 16), torch.randn(3, 40, 2, 16)
    lens = [0, 2, 40]
    with tilefold.use_backend(backend):
        out, lse = tilefold.attention_with_kvcache(q, k_cache, v_cache, cache_seqlens=torch.tensor(lens, dtype=torch.int32),
                                                   causal=True, return_lse=True)
    assert (out[0] == 0).all() and torch.isneginf(lse[0]).all()
    assert torch.isneginf(lse[1, :, :3]).all() and torch.isfinite(lse[1, :, 3:]).all()  # rows 0-2 see no key
    ref, _ = attention_ref(q[2:], k_cache[2:], v_cache[2:], causal=True)
    assert _err(out[2:], ref) < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_int_lengths_and_default_full_cache(backend):
    torch.manual_seed(2)
    q = torch.randn(2, 1, 4, 16)
    k_cache, v_cache = torch.randn(2, 30, 2, 16), torch.randn(2, 30, 2, 16)
    with tilefold.use_backend(backend):
        full = tilefold.attention_with_kvcache(q, k_cache, v_cache)
        ten = tilefold.attention_with_kvcache(q, k_cache, v_cache, cache_seqlens=10)
    assert _err(full, attention_ref(q, k_cache, v_cache)[0]) < 1e-5
    assert _err(ten, attention_ref(q, k_cache[:, :10], v_cache[:, :10])[0]) < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("M", [2, 70], ids=["decode_kernel", "forward_kernel"])
def test_cache_slots(backend, M):
    """cache_batch_idx: sequence b reads and appends to cache row slots[b] of a larger pool; the other rows stay
    untouched; equal to the call on the gathered caches (written back)"""
    torch.manual_seed(7)
    q = torch.randn(2, M, 4, 16)
    k, v = torch.randn(2, M, 1, 16), torch.randn(2, M, 1, 16)
    pool_k, pool_v = torch.randn(5, 100, 1, 16), torch.randn(5, 100, 1, 16)
    slots = torch.tensor([3, 1], dtype=torch.int32)
    lens = torch.tensor([9, 20], dtype=torch.int32)
    gk, gv = pool_k[slots.long()].clone(), pool_v[slots.long()].clone()
    pk, pv = pool_k.clone(), pool_v.clone()
    with tilefold.use_backend(backend):
        out = tilefold.attention_with_kvcache(q, pool_k, pool_v, k, v, cache_seqlens=lens, cache_batch_idx=slots,
                                              causal=True, num_splits=2)
        want = tilefold.attention_with_kvcache(q, gk, gv, k, v, cache_seqlens=lens, causal=True, num_splits=2)
    assert torch.equal(out, want)
    pk[slots.long()], pv[slots.long()] = gk, gv
    assert torch.equal(pool_k, pk) and torch.equal(pool_v, pv)
    ref, _, _, _ = _reference(q, pool_k[slots.long()], pool_v[slots.long()], None, None, (lens + M).tolist(),
                              causal=True)
    assert _err(out, ref) < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_lengths_and_slots(backend):
    """lengths / slots given as strided views (the kernels read them at unit stride: they are made contiguous)"""
    torch.manual_seed(8)
    q, k, v = torch.randn(2, 1, 2, 16), torch.randn(2, 1, 2, 16), torch.randn(2, 1, 2, 16)
    pool_k, pool_v = torch.randn(3, 20, 2, 16), torch.randn(3, 20, 2, 16)
    lens = torch.tensor([[3, 99], [10, 99]], dtype=torch.int32)[:, 0]
    slots = torch.tensor([[2, 7], [0, 7]], dtype=torch.int32)[:, 0]
    pk, pv = pool_k.clone(), pool_v.clone()
    with tilefold.use_backend(backend):
        out = tilefold.attention_with_kvcache(q, pool_k, pool_v, k, v, cache_seqlens=lens, cache_batch_idx=slots)
    assert torch.equal(pool_k[2, 3], k[0, 0]) and torch.equal(pool_k[0, 10], k[1, 0])
    pk[2, 3], pk[0, 10], pv[2, 3], pv[0, 10] = k[0, 0], k[1, 0], v[0, 0], v[1, 0]
    assert torch.equal(pool_k, pk) and torch.equal(pool_v, pv)
    for b, (r, n) in enumerate(((2, 4), (0, 11))):
        assert _err(out[b:b + 1], attention_ref(q[b:b + 1], pool_k[r:r + 1, :n], pool_v[r:r + 1, :n])[0]) < 1e-5


def test_backends_agree_bitwise_on_the_cache_write():
    """the append kernel (interpreter) and the torch write leave identical caches"""
    torch.manual_seed(3)
    q = torch.randn(2, 3, 4, 16)
    k, v = torch.randn(2, 3, 2, 16), torch.randn(2, 3, 2, 16)
    caches = []
    for backend in BACKENDS:
        kc, vc = torch.zeros(2, 20, 2, 16), torch.zeros(2, 20, 2, 16)
        with tilefold.use_backend(backend):
            tilefold.attention_with_kvcache(q, kc, vc, k, v, cache_seqlens=torch.tensor([4, 17], dtype=torch.int32))
        caches.append((kc, vc))
    assert torch.equal(caches[0][0], caches[1][0]) and torch.equal(caches[0][1], caches[1][1])
    assert torch.equal(caches[0][0][1, 17:20], k[1]) and (caches[0][0][1, :17] == 0).all()


def test_append_kernel_skips_positions_outside_the_cache():
    """a CUDA tensor of lengths is not checked on the host (that would be a sync per step): the write skips positions
    outside the cache instead of writing past it (the kernel, under the interpreter, called directly)"""
    from tilefold.ops.decode.kvcache import _append
    kc, vc = torch.zeros(2, 8, 1, 4), torch.zeros(2, 8, 1, 4)
    k, v = torch.ones(2, 3, 1, 4), torch.ones(2, 3, 1, 4)
    with tilefold.use_backend("triton"):
        _append(kc, vc, k, v, torch.tensor([6, -2], dtype=torch.int32))
    assert (kc[0, 6:] == 1).all() and (kc[0, :6] == 0).all()
    assert (kc[1, :1] == 1).all() and (kc[1, 1:] == 0).all()


@pytest.mark.parametrize("bad, msg", [
    (dict(cache_seqlens=28), "cache_seqlens: expected an int in \\[0, 27\\]"),
    (dict(cache_seqlens=torch.tensor([3, 28], dtype=torch.int32)), "expected values in \\[0, 27\\]"),
    (dict(cache_seqlens=torch.tensor([3, -1], dtype=torch.int32)), "expected values in"),
    (dict(cache_seqlens=torch.tensor([3, 4])), "int32 tensor of shape \\(2,\\)"),
    (dict(cache_seqlens=torch.tensor([3], dtype=torch.int32)), "int32 tensor of shape \\(2,\\)"),
    (dict(cache_seqlens=None), "required when k / v are given"),
    (dict(k=None), "k, v: expected both or neither"),
    (dict(k=torch.randn(2, 3, 1, 16)), "k: expected shape \\(2, seqlen_new, 2, 16\\)"),
    (dict(rotary_cos=torch.randn(30, 4)), "rotary_cos, rotary_sin: expected both or neither"),
    (dict(rotary_cos=torch.randn(29, 4), rotary_sin=torch.randn(29, 4)), "at least seqlen_cache=30"),
    (dict(rotary_cos=torch.randn(30, 9), rotary_sin=torch.randn(30, 9)), "rotary_dim in \\[2, 16\\]"),
    (dict(k=None, v=None, cache_seqlens=None, rotary_cos=torch.randn(30, 4), rotary_sin=torch.randn(30, 4)),
     "expected with new keys"),
    (dict(causal="yes"), "causal: expected a bool"),
    (dict(num_splits=-1), "num_splits"),
    (dict(cache_batch_idx=torch.tensor([0, 2], dtype=torch.int32)), "cache_batch_idx: expected values in \\[0, 2\\)"),
    (dict(cache_batch_idx=torch.tensor([0, 1])), "cache_batch_idx: expected an int32 tensor of shape \\(2,\\)"),
])
def test_bad_input_raises(bad, msg):
    q = torch.randn(2, 1, 4, 16)
    args = dict(k=torch.randn(2, 3, 2, 16), v=torch.randn(2, 3, 2, 16), cache_seqlens=5)
    args.update(bad)
    k_cache, v_cache = torch.randn(2, 30, 2, 16), torch.randn(2, 30, 2, 16)
    before = k_cache.clone()
    with pytest.raises(ValueError, match=msg):
        tilefold.attention_with_kvcache(q, k_cache, v_cache, args.pop("k"), args.pop("v"), **args)
    assert torch.equal(k_cache, before)  # nothing written before the checks


def _paged(k_cache, v_cache, page, n_spare, seed):
    """The padded caches (B, L, HK, D) as a paged pool: each sequence's L / page pages at shuffled places among
    n_spare extra (random) pages; returns (pool_k, pool_v, block_table int32 (B, L / page))."""
    B, L = k_cache.shape[:2]
    nb = L // page
    g = torch.Generator().manual_seed(seed)
    n_pages = B * nb + n_spare
    where = torch.randperm(n_pages, generator=g)[:B * nb].reshape(B, nb)
    pool_k = torch.randn(n_pages, page, *k_cache.shape[2:], generator=g).to(k_cache.dtype)
    pool_v = torch.randn(n_pages, page, *v_cache.shape[2:], generator=g).to(v_cache.dtype)
    pool_k[where.reshape(-1)] = k_cache.reshape(B * nb, page, *k_cache.shape[2:])
    pool_v[where.reshape(-1)] = v_cache.reshape(B * nb, page, *v_cache.shape[2:])
    return pool_k, pool_v, where.to(torch.int32)


PAGED_CASES = {  # (B, M, H, HK, D, page, pages per sequence, S_new, lens, mask)
    "decode_page1": (3, 1, 8, 2, 32, 1, 40, 1, [0, 17, 39], dict(causal=True)),
    "decode_page5_window_softcap": (2, 2, 4, 2, 16, 5, 9, 2, [3, 43], dict(causal=True, window_size=(11, 0),
                                                                            softcap=5.0)),
    "decode_page16_mqa": (2, 3, 4, 1, 24, 16, 4, 0, [64, 20], {}),
    "forward_kernel_page32": (2, 70, 4, 1, 16, 32, 5, 70, [0, 25], dict(causal=True)),  # 280 rows: the forward kernel
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("name", list(PAGED_CASES))
@pytest.mark.parametrize("splits", [1, 3, 0])
def test_paged_cache(monkeypatch, backend, dtype, name, splits):
    """block_table: the same step on a paged pool (pages shuffled among spare ones, page sizes 1 / 5 / 16 / 32, i.e.
    not all multiples of a key tile) equals the fp64 reference on the padded cache (2x rule); the new keys land in the
    right page rows and nothing else in the pool changes. The kernels read the pages in place
    (PAGED_GATHER_MAX_BYTES = 0: under the interpreter, without descriptors, the shipped cap gathers the forward
    kernel's call first; test_paged_forward_call_gathers_first)"""
    from tilefold.ops.decode import kvcache
    monkeypatch.setattr(kvcache, "PAGED_GATHER_MAX_BYTES", 0)
    _paged_case(backend, dtype, name, splits)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("splits", [1, 0])
def test_paged_forward_call_gathers_first(monkeypatch, dtype, splits):
    """the shipped policy: the forward kernel's paged call without descriptors gathers the pages (K and V) first, then
    attends as a padded cache -- the same checks as in place"""
    from tilefold.ops.decode import kvcache
    calls = []
    real = kvcache._gather_pages
    monkeypatch.setattr(kvcache, "_gather_pages", lambda c, t: calls.append(1) or real(c, t))
    _paged_case("triton", dtype, "forward_kernel_page32", splits)
    assert len(calls) == 2


def test_paged_forward_call_through_descriptors(monkeypatch):
    """the forward kernel's paged call with descriptors forced under the interpreter (16 x 16 tiles, pages of 32,
    contiguous pools): the new keys appended into their pages first, then read as boxes of the pool's rows"""
    from tilefold.ops.attention import config as C, forward as F
    from tilefold.ops.decode import kvcache
    monkeypatch.setattr(kvcache, "PAGED_GATHER_MAX_BYTES", 0)
    monkeypatch.setattr(F, "tma_ok", lambda k, v: True)
    monkeypatch.setattr(F, "ensure_allocator", lambda: None)
    monkeypatch.setattr(C, "fwd_config", lambda *a, **kw: C.KernelConfig(16, 16, 4, 1, use_tma=True))
    seen = []
    kern = F.attention_fwd_kernel

    class Spy:
        def __getitem__(self, grid):
            launch = kern[grid]
            return lambda *a, **kw: seen.append(kw["USE_TMA"]) or launch(*a, **kw)
    monkeypatch.setattr(F, "attention_fwd_kernel", Spy())
    _paged_case("triton", torch.float32, "forward_kernel_page32", 1, v_strided=False)
    assert seen == [True]


def _paged_case(backend, dtype, name, splits, v_strided=True):
    B, M, H, HK, D, page, nb, S_new, lens, mask = PAGED_CASES[name]
    L = page * nb
    torch.manual_seed(11)
    q = torch.randn(B, M, H, D, dtype=dtype)
    k_cache, v_cache = torch.randn(B, L, HK, D, dtype=dtype), torch.randn(B, L, HK, D, dtype=dtype)
    k = torch.randn(B, S_new, HK, D, dtype=dtype) if S_new else None
    v = torch.randn(B, S_new, HK, D, dtype=dtype) if S_new else None
    pool_k, pool_v, table = _paged(k_cache, v_cache, page, 3, seed=len(name))
    if v_strided:
        wide = torch.zeros(pool_v.shape[0], HK, page + 3, D, dtype=dtype)  # V's page / row / head strides differ
        wide[:, :, :page] = pool_v.transpose(1, 2)
        pool_v = wide.transpose(1, 2)[:, :page]
    ref, rlse, kc_ref, vc_ref = _reference(q, k_cache, v_cache, k, v, lens, **mask)
    low, _, _, _ = _reference(q, k_cache, v_cache, k, v, lens, compute_dtype=dtype, **mask)
    spare = torch.ones(pool_k.shape[0], dtype=torch.bool)
    spare[table.long().reshape(-1)] = False
    pk0 = pool_k.clone()
    with tilefold.use_backend(backend):
        out, lse = tilefold.attention_with_kvcache(q, pool_k, pool_v, k, v, block_table=table,
                                                   cache_seqlens=torch.tensor(lens, dtype=torch.int32),
                                                   num_splits=splits, return_lse=True, **mask)
    pages = table.long()
    assert torch.equal(pool_k[pages].reshape(B, L, HK, D), kc_ref.to(dtype))
    assert torch.equal(pool_v[pages].reshape(B, L, HK, D), vc_ref.to(dtype))
    assert torch.equal(pool_k[spare], pk0[spare])
    assert _err(out, ref) <= 2 * _err(low, ref) + 1e-5
    fin = torch.isfinite(rlse)
    assert torch.equal(fin, torch.isfinite(lse)) and _err(lse[fin], rlse[fin]) <= 1e-4


@pytest.mark.parametrize("cap", [0, None], ids=["in_place", "shipped_policy"])
def test_paged_decode_reads_pages_in_place(monkeypatch, cap):
    """the kernels read the pages through the block table (no gathered copy): the decode kernel always, the forward
    kernel (more than 256 packed rows) where it reads the pool through descriptors or the copy would pass
    PAGED_GATHER_MAX_BYTES (the interpreter has no descriptors: the shipped cap gathers); the torch path gathers"""
    from tilefold.ops.decode import kvcache
    if cap is not None:
        monkeypatch.setattr(kvcache, "PAGED_GATHER_MAX_BYTES", cap)
    calls = []
    real = kvcache._gather_pages
    monkeypatch.setattr(kvcache, "_gather_pages", lambda c, t: calls.append(1) or real(c, t))
    torch.manual_seed(12)
    pool_k, pool_v = torch.randn(6, 8, 2, 16), torch.randn(6, 8, 2, 16)
    table = torch.tensor([[4, 0], [2, 5]], dtype=torch.int32)
    for M, backend, gathered in ((1, "triton", 0), (70, "triton", 0 if cap == 0 else 2), (1, "torch", 2)):
        calls.clear()  # 70 x 4 rows > 256
        with tilefold.use_backend(backend):
            tilefold.attention_with_kvcache(torch.randn(2, M, 8, 16), pool_k, pool_v, block_table=table,
                                            cache_seqlens=10)
        assert len(calls) == gathered, (M, backend)


def test_paged_bad_table_entries_never_read_outside():
    """a block table on the device is not checked on the host: the kernels clamp its entries into the pool (here the
    interpreter, with the check bypassed), so a bad entry reads a real page, never outside the pool"""
    from tilefold.ops.decode import kvcache
    torch.manual_seed(13)
    pool_k, pool_v = torch.randn(3, 4, 1, 16), torch.randn(3, 4, 1, 16)
    q = torch.randn(1, 1, 2, 16)
    bad = torch.tensor([[7, -5]], dtype=torch.int32)  # clamped to pages 2 and 0
    with tilefold.use_backend("triton"):
        out = kvcache._attend(q, pool_k, pool_v, torch.tensor([8], dtype=torch.int32), None, 16 ** -0.5, (-1, -1),
                              0.0, 1, bad)
    want, _ = attention_ref(q, torch.cat((pool_k[2], pool_k[0]))[None], torch.cat((pool_v[2], pool_v[0]))[None])
    assert _err(out[0], want) < 1e-5


@pytest.mark.parametrize("bad, msg", [
    (dict(block_table=torch.tensor([[0, 3]], dtype=torch.int32)), "block_table: expected an int32 tensor of shape"),
    (dict(block_table=torch.tensor([[0, 3], [1, 2]])), "block_table: expected an int32 tensor of shape"),
    (dict(block_table=torch.zeros(2, 0, dtype=torch.int32)), "max_blocks >= 1"),
    (dict(block_table=torch.tensor([[0, 6], [1, 2]], dtype=torch.int32)), "block_table: expected values in \\[0, 6\\)"),
    (dict(block_table=torch.tensor([[0, 3], [1, 2]], dtype=torch.int32),
          cache_batch_idx=torch.tensor([0, 1], dtype=torch.int32)), "at most one"),
    (dict(block_table=torch.tensor([[0, 3], [1, 2]], dtype=torch.int32), cache_seqlens=10),
     "cache_seqlens: expected an int in \\[0, 9\\]"),
    (dict(block_table=torch.tensor([[0, 3], [1, 2]], dtype=torch.int32), rotary_cos=torch.randn(9, 4),
          rotary_sin=torch.randn(9, 4)), "at least seqlen_cache=10"),
])
def test_paged_bad_input_raises(bad, msg):
    q = torch.randn(2, 1, 4, 16)
    pool_k, pool_v = torch.randn(6, 5, 2, 16), torch.randn(6, 5, 2, 16)
    args = dict(k=torch.randn(2, 1, 2, 16), v=torch.randn(2, 1, 2, 16), cache_seqlens=3)
    args.update(bad)
    before = pool_k.clone()
    with pytest.raises(ValueError, match=msg):
        tilefold.attention_with_kvcache(q, pool_k, pool_v, args.pop("k"), args.pop("v"), **args)
    assert torch.equal(pool_k, before)


def test_flash_attn_with_kvcache_compat():
    """flash_attn's argument list and readings (negative window edge unbounded, return_softmax_lse, block_table,
    cache_leftpad); alibi_slopes passes through (tests/ops/decode/test_alibi_decode.py), bad slopes refused by name"""
    torch.manual_seed(4)
    q = torch.randn(2, 1, 4, 16)
    k_cache, v_cache = torch.randn(2, 30, 2, 16), torch.randn(2, 30, 2, 16)
    k, v = torch.randn(2, 1, 2, 16), torch.randn(2, 1, 2, 16)
    lens = torch.tensor([3, 20], dtype=torch.int32)
    kc2, vc2 = k_cache.clone(), v_cache.clone()
    out, lse = flash_attn_with_kvcache(q, k_cache, v_cache, k, v, cache_seqlens=lens, causal=True,
                                       window_size=(-5, -1), return_softmax_lse=True)
    want, wlse = tilefold.attention_with_kvcache(q, kc2, vc2, k, v, cache_seqlens=lens, causal=True, return_lse=True)
    assert torch.equal(out, want) and torch.equal(lse, wlse) and torch.equal(k_cache, kc2)
    table = torch.tensor([[1], [0]], dtype=torch.int32)  # block_table: each sequence's cache row as one 30-key page
    paged = flash_attn_with_kvcache(q, kc2.clone(), vc2.clone(), cache_seqlens=lens + 1, block_table=table)
    assert torch.equal(paged, tilefold.attention_with_kvcache(q, kc2.flip(0), vc2.flip(0), cache_seqlens=lens + 1))
    pads = torch.tensor([1, 7], dtype=torch.int32)
    left = flash_attn_with_kvcache(q, kc2.clone(), vc2.clone(), cache_seqlens=lens, cache_leftpad=pads, causal=True)
    assert torch.equal(left, tilefold.attention_with_kvcache(q, kc2, vc2, cache_seqlens=lens, cache_leftpad=pads,
                                                             causal=True))
    with pytest.raises(ValueError, match="alibi_slopes"):
        flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lens, alibi_slopes=torch.ones(3))


# ---------------------------------------------------------------------------------------------------
# GPU tier


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("M,S_new", [(1, 1), (4, 4), (64, 64)], ids=["decode", "spec4", "chunk64"])
@pytest.mark.parametrize("leftpad", [False, True], ids=["", "leftpad"])
def test_against_reference_gpu(dtype, M, S_new, leftpad):
    """hd128 GQA 32 / 8 heads, lengths from 0 to the end of an 8k cache, causal, rotary; the split choice of the
    decode path (num_splits=0) and the forward kernel with splits for 64-row chunks; with left pads (one of them the
    whole filled length)"""
    torch.manual_seed(5)
    B, H, HK, D, L = 4, 32, 8, 128, 8192
    lens = [0, 1000, 4097, L - S_new]
    pads = [0, 1000, 33, 5000] if leftpad else None
    q = torch.randn(B, M, H, D, device="cuda", dtype=dtype)
    k_cache = torch.randn(B, L, HK, D, device="cuda", dtype=dtype)
    v_cache = torch.randn(B, L, HK, D, device="cuda", dtype=dtype)
    k = torch.randn(B, S_new, HK, D, device="cuda", dtype=dtype)
    v = torch.randn(B, S_new, HK, D, device="cuda", dtype=dtype)
    ang = torch.arange(L, device="cuda")[:, None] * (10000.0 ** (-torch.arange(32, device="cuda") / 32))[None, :]
    cos, sin = torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)
    ref, rlse, kc_ref, _ = _reference(q.cpu(), k_cache.cpu(), v_cache.cpu(), k.cpu(), v.cpu(), lens,
                                      rotary=(cos.cpu(), sin.cpu(), False), causal=True, pads=pads)
    low, _, _, _ = _reference(q.cpu(), k_cache.cpu(), v_cache.cpu(), k.cpu(), v.cpu(), lens, compute_dtype=dtype,
                              rotary=(cos.cpu(), sin.cpu(), False), causal=True, pads=pads)
    extra = dict(cache_leftpad=torch.tensor(pads, dtype=torch.int32, device="cuda")) if leftpad else {}
    out, lse = tilefold.attention_with_kvcache(q, k_cache, v_cache, k, v,
                                               cache_seqlens=torch.tensor(lens, dtype=torch.int32, device="cuda"),
                                               causal=True, rotary_cos=cos, rotary_sin=sin, rotary_interleaved=False,
                                               return_lse=True, **extra)
    assert _err(k_cache.cpu(), kc_ref) <= 2 * torch.finfo(dtype).eps * 8
    assert _err(out.cpu(), ref) <= 2 * _err(low, ref) + 1e-5
    fin = torch.isfinite(rlse)
    assert torch.equal(fin, torch.isfinite(lse.cpu())) and _err(lse.cpu()[fin], rlse[fin]) <= 1e-3


@pytest.mark.gpu
def test_cuda_graph_capture_gpu():
    """a decode step (append + attention) captured once and replayed with the lengths advanced on the device: each
    replay equals the eager step"""
    torch.manual_seed(6)
    B, H, HK, D, L = 2, 8, 2, 64, 512
    q = torch.randn(B, 1, H, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, 1, HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    k_cache = torch.randn(B, L, HK, D, device="cuda", dtype=torch.bfloat16)
    v_cache = torch.randn_like(k_cache)
    lens = torch.tensor([10, 300], dtype=torch.int32, device="cuda")
    step = lambda: tilefold.attention_with_kvcache(q, k_cache, v_cache, k, v, cache_seqlens=lens,  # noqa: E731
                                                   causal=True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    kc0, vc0 = k_cache.clone(), v_cache.clone()  # after the warm-up's write; the capture itself writes nothing
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    outs = []
    for _ in range(3):
        lens += 1
        graph.replay()
        outs.append(out.clone())
    kc, vc, ln = kc0.clone(), vc0.clone(), torch.tensor([10, 300], dtype=torch.int32, device="cuda")
    for i in range(3):
        ln += 1
        want = tilefold.attention_with_kvcache(q, kc, vc, k, v, cache_seqlens=ln, causal=True)
        assert torch.equal(outs[i], want), i
    assert torch.equal(kc, k_cache) and torch.equal(vc, v_cache)


@pytest.mark.gpu
@pytest.mark.parametrize("page", [16, 256, 1000])
@pytest.mark.parametrize("M,S_new,splits", [(1, 1, 0), (1, 1, 1), (4, 4, 0), (64, 64, 0)],
                         ids=["decode", "decode-nosplit", "spec4", "chunk64"])
def test_paged_cache_gpu(page, M, S_new, splits):
    """bf16 hd128, 32 / 8 heads, an 8k-key (page 1000: 8000) paged cache with shuffled pages among spare ones, lengths
    from 0 to full, causal, against the fp64 reference on the padded cache (2x rule); the pool's page rows hold the new
    keys; chunk64 (256 packed rows) still reads the pages in place, the decode kernel's 64-row tiles"""
    torch.manual_seed(9)
    B, H, HK, D = 4, 32, 8, 128
    dtype = torch.bfloat16
    nb = 8192 // page
    L = nb * page
    lens = [0, 1000, 4097, L - S_new]
    q = torch.randn(B, M, H, D, dtype=dtype)
    k_cache, v_cache = torch.randn(B, L, HK, D, dtype=dtype), torch.randn(B, L, HK, D, dtype=dtype)
    k, v = torch.randn(B, S_new, HK, D, dtype=dtype), torch.randn(B, S_new, HK, D, dtype=dtype)
    pool_k, pool_v, table = _paged(k_cache, v_cache, page, 5, seed=page)
    ref, rlse, kc_ref, _ = _reference(q, k_cache, v_cache, k, v, lens, causal=True)
    low, _, _, _ = _reference(q, k_cache, v_cache, k, v, lens, compute_dtype=dtype, causal=True)
    pk, pv, tb = pool_k.cuda(), pool_v.cuda(), table.cuda()
    out, lse = tilefold.attention_with_kvcache(q.cuda(), pk, pv, k.cuda(), v.cuda(), block_table=tb,
                                               cache_seqlens=torch.tensor(lens, dtype=torch.int32, device="cuda"),
                                               causal=True, num_splits=splits, return_lse=True)
    assert torch.equal(pk.cpu()[table.long()].reshape(B, L, HK, D), kc_ref.to(dtype))
    assert _err(out.cpu(), ref) <= 2 * _err(low, ref) + 1e-5
    fin = torch.isfinite(rlse)
    assert torch.equal(fin, torch.isfinite(lse.cpu())) and _err(lse.cpu()[fin], rlse[fin]) <= 1e-3


def test_paged_config_replaces_the_32_key_descriptor_tile():
    """the paged plan's tile (call 92's sweep): the 32-key descriptor tile of long splits becomes the 64-key pointer
    tile (3 stages + PAGED_EXTRA_STAGES); the others keep their tiles"""
    from tilefold.ops.decode import kernel as K
    stream = K.DecodeConfig(16, 32, 4, 4, 4, use_tma=True)
    assert K.paged_config(stream) == K.DecodeConfig(16, 64, 4, 3, 4)
    for cfg in (K.DecodeConfig(16, 128, 4, 2, 3, use_tma=True), K.DecodeConfig(16, 64, 4, 3, 3), K.BLOCK64_CONFIG):
        assert K.paged_config(cfg) == cfg
