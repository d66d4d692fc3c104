"""Attention against a KV cache, the decoding step of a generative model: ``flash_attn_with_kvcache``'s semantics on
tilefold's decode / split-KV kernels.

The cache is padded: ``k_cache`` / ``v_cache`` (batch, seqlen_cache, heads_k, headdim) with sequence b's keys in
positions ``[0, cache_seqlens[b])``. A step may bring new keys ``k`` / ``v`` (batch, seqlen_new, heads_k, headdim):
they are written into the cache **in place** at positions ``cache_seqlens[b] ..`` (as flash_attn does; the caller's
cache is the state being updated), then q attends to the first ``cache_seqlens[b] + seqlen_new`` keys of each
sequence, with causal / window masks aligned to that length (bottom-right). Optional rotary embeddings are applied to
q and to the new keys at their positions before the write.

A paged cache (``block_table``, vLLM's layout as flash_attn takes it): K / V are pools of pages (n_pages,
page_size, heads_k, headdim) and row b of the block table lists sequence b's pages in order, so key n of sequence b
lives in page ``block_table[b, n // page_size]`` at row ``n % page_size``. The decode kernel looks each key tile's
pages up (pointer loads, any page size), and so does the forward kernel for larger calls.

The per-sequence lengths reach the kernels as a device tensor (``seqused_k``): sequence b's key loop stops at its
length, so a step reads only the filled part of the cache, and nothing is synchronized with the host. Lengths given as
an int or a CPU tensor are checked on the host; a CUDA tensor is not (that needs a device sync per step): there the
kernels clamp each length into [0, seqlen_cache] and the write skips positions outside the cache, so a bad length
never reads or writes outside the tensors, but its result is meaningless.

No gradient: this is an inference path (flash_attn's has none either).
"""
from __future__ import annotations

import contextlib

import torch

from ..attention import cpu
from ..common.dispatch import HAVE_TRITON, backend_for
from ..common.host import rows_grid, visible_keys
from . import splitkv
from ..common.validate import (MAX_HEADDIM, _alibi, _is_int, _validate_bool, _validate_grid_rows, _validate_last_contiguous,
                               _validate_num_splits, _validate_qkv, _validate_same, _validate_scale, _validate_softcap,
                               _validate_tensor, _validate_window)

if HAVE_TRITON:
    import triton
    import triton.language as tl

    from ..common.masks import cache_row, paged_rows

    @triton.jit
    def kv_append_kernel(K_NEW, V_NEW, K_CACHE, V_CACHE, cache_seqlens, cache_batch_idx, n_cache,
                         stride_nb, stride_nm, stride_nh, stride_vnb, stride_vnm, stride_vnh,
                         stride_cb, stride_cn, stride_ch, stride_vcb, stride_vcn, stride_vch,
                         seqlen_cache, HK, D, BLOCK_TABLE, stride_btb, page_size,
                         BLOCK_HD: tl.constexpr, BLOCK_D: tl.constexpr, HAS_CACHE_IDX: tl.constexpr,
                         PAGED: tl.constexpr = False):
        """Grid (seqlen_new, batch): new token i of sequence b goes to cache position cache_seqlens[b] + i of cache
        row b (or cache_batch_idx[b], clamped; PAGED: row (pos % page_size) of page BLOCK_TABLE[b, pos // page_size],
        clamped into the n_cache pages), all its heads_k · headdim values, K and V; a position outside
        [0, seqlen_cache) is not written."""
        i = tl.program_id(0)
        b = tl.program_id(1) + tl.program_id(2) * tl.num_programs(1)  # host.rows_grid
        pos = tl.load(cache_seqlens + b) + i
        if (pos >= 0) & (pos < seqlen_cache):
            offs = tl.arange(0, BLOCK_HD)
            h = offs // BLOCK_D
            d = offs % BLOCK_D
            ok = (h < HK) & (d < D)
            b64 = b.to(tl.int64)
            if PAGED:  # (a name per type: Triton refuses an int32 redefined as int64 in one branch)
                row, at = paged_rows(BLOCK_TABLE + b64 * stride_btb, pos, seqlen_cache, page_size, n_cache)
            else:
                row = cache_row(b, cache_batch_idx, n_cache, HAS_CACHE_IDX).to(tl.int64)
                at = pos.to(tl.int64)
            src = b64 * stride_nb + i.to(tl.int64) * stride_nm + h * stride_nh + d
            dst = row * stride_cb + at * stride_cn + h * stride_ch + d
            tl.store(K_CACHE + dst, tl.load(K_NEW + src, mask=ok), mask=ok)
            src = b64 * stride_vnb + i.to(tl.int64) * stride_vnm + h * stride_vnh + d
            dst = row * stride_vcb + at * stride_vcn + h * stride_vch + d
            tl.store(V_CACHE + dst, tl.load(V_NEW + src, mask=ok), mask=ok)


def _append(k_cache, v_cache, k, v, seqlens, slots=None, block_table=None):
    """Write k / v (B, S_new, HK, D) into the caches at positions seqlens[b] + i of row b, or of row slots[b], or of
    sequence b's pages (block_table (B, max_blocks), pages of k_cache.shape[1] keys) (seqlens, slots, block_table:
    int32 on the caches' device)."""
    B, S_new, HK, D = k.shape
    if B == 0 or S_new == 0 or HK == 0 or D == 0:
        return
    page = k_cache.shape[1]
    L = block_table.shape[1] * page if block_table is not None else page
    if backend_for(k_cache) == "triton":
        bd = triton.next_power_of_2(D)
        bt_args = (block_table, block_table.stride(0), page) if block_table is not None else (seqlens, 0, 0)
        kv_append_kernel[(S_new, *rows_grid(B, 1))](k, v, k_cache, v_cache, seqlens, slots if slots is not None else seqlens,
                                     k_cache.shape[0], *k.stride()[:3], *v.stride()[:3],
                                     *k_cache.stride()[:3], *v_cache.stride()[:3], L, HK, D, *bt_args,
                                     BLOCK_HD=triton.next_power_of_2(HK) * bd, BLOCK_D=bd,
                                     HAS_CACHE_IDX=slots is not None, PAGED=block_table is not None)
        return
    # torch path: the lengths (and a block table) were checked on the host, every position is inside the cache
    pos = seqlens.to(torch.int64)[:, None] + torch.arange(S_new, device=k.device)
    if block_table is not None:
        bidx = block_table.to(torch.int64).gather(1, pos // page)
        pos = pos % page
    else:
        rows = slots.to(torch.int64) if slots is not None else torch.arange(B, device=k.device)
        bidx = rows[:, None].expand_as(pos)
    k_cache[bidx, pos] = k
    v_cache[bidx, pos] = v


def _rotate(x, cos, sin, pos, interleaved):
    """x (B, S, H, D) with its first rotary_dim = 2 · cos.shape[1] dims rotated by the angles of positions pos
    (B, S) (clamped into the table: a bad length cannot index outside it), in fp32; the rest unchanged.
    interleaved: dims (0, 1), (2, 3), ... are the pairs (GPT-J); else (i, i + rotary_dim / 2) (GPT-NeoX)."""
    half = cos.shape[1]
    pos = pos.clamp(0, cos.shape[0] - 1)
    c = cos[pos].float()[:, :, None, :]
    s = sin[pos].float()[:, :, None, :]
    xr = x[..., :2 * half].float()
    if interleaved:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
        rot = torch.stack((x1 * c - x2 * s, x2 * c + x1 * s), -1).flatten(-2)
    else:
        x1, x2 = xr[..., :half], xr[..., half:]
        rot = torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), -1)
    return torch.cat((rot.to(x.dtype), x[..., 2 * half:]), -1)


def _dense_index(name, t, B, expected="an int32 tensor"):
    """An int32 (B,) tensor with unit stride (the kernels read element b at offset b: a strided view is copied, on
    its device, without a host sync)."""
    if not isinstance(t, torch.Tensor) or t.dtype != torch.int32 or tuple(t.shape) != (B,):
        got = f"{t.dtype} of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name}: expected {expected} of shape ({B},), got {got}")
    return t.contiguous()


def _lengths(cache_seqlens, B, L, S_new, device):
    """cache_seqlens as an int32 (B,) tensor on ``device``; checked against the cache when an int or a CPU tensor."""
    if cache_seqlens is None:
        if S_new:
            raise ValueError("cache_seqlens: required when k / v are given (where to write them)")
        return torch.full((B,), L, dtype=torch.int32, device=device)
    if _is_int(cache_seqlens):
        if not 0 <= cache_seqlens <= L - S_new:
            raise ValueError(f"cache_seqlens: expected an int in [0, {L - S_new}] (seqlen_cache {L} - seqlen_new "
                             f"{S_new}), got {cache_seqlens}")
        return torch.full((B,), int(cache_seqlens), dtype=torch.int32, device=device)
    cache_seqlens = _dense_index("cache_seqlens", cache_seqlens, B, "an int or an int32 tensor")
    return _on_device("cache_seqlens", cache_seqlens, 0, L - S_new + 1,
                      f"[0, {L - S_new}] (seqlen_cache {L} - seqlen_new {S_new})", device)


def _on_device(name, t, lo, hi, allowed, device):
    """An index tensor on ``device``: a CPU tensor is checked against [lo, hi) (``allowed`` says it in the error) and
    moved; a tensor on ``device`` is not checked (a host sync per step; the kernels clamp it)."""
    if t.device.type == "cpu":
        if t.numel() and (int(t.min()) < lo or int(t.max()) >= hi):
            raise ValueError(f"{name}: expected values in {allowed}, got {t.tolist()}")
        return t.to(device)
    if t.device != device:
        raise ValueError(f"{name}: expected device {device} (as q) or cpu, got {t.device}")
    return t


def _slots(cache_batch_idx, B, n_cache, device):
    """cache_batch_idx as an int32 (B,) tensor on ``device`` (or None); its values checked against the cache's batch
    when it is a CPU tensor."""
    if cache_batch_idx is None:
        return None
    cache_batch_idx = _dense_index("cache_batch_idx", cache_batch_idx, B)
    return _on_device("cache_batch_idx", cache_batch_idx, 0, n_cache, f"[0, {n_cache}) (the cache's batch)", device)


def _leftpad(cache_leftpad, cache_seqlens, B, L, device):
    """cache_leftpad as an int32 (B,) tensor on ``device`` (or None). On the CPU its values are checked against [0, L]
    and, where cache_seqlens is an int or a CPU tensor, against each sequence's filled length (a sequence's keys are
    positions [cache_leftpad[b], cache_seqlens[b] + seqlen_new) of its cache)."""
    if cache_leftpad is None:
        return None
    pads = _dense_index("cache_leftpad", cache_leftpad, B)
    if pads.device.type == "cpu":
        lens = (torch.full((B,), cache_seqlens) if _is_int(cache_seqlens) else
                cache_seqlens if isinstance(cache_seqlens, torch.Tensor) and cache_seqlens.device.type == "cpu" else
                torch.full((B,), L) if cache_seqlens is None else None)
        if lens is not None and B and bool((pads > lens.to(torch.int64)).any()):
            raise ValueError(f"cache_leftpad: expected values <= cache_seqlens (where each sequence's keys start, "
                             f"before its end), got {pads.tolist()} against {lens.tolist()}")
    return _on_device("cache_leftpad", pads, 0, L + 1, f"[0, {L}] (seqlen_cache {L})", device)


def _block_table(block_table, B, n_pages, device):
    """block_table as an int32 (B, max_blocks) tensor on ``device`` with unit column stride (a copy on its device
    otherwise); its entries checked against the n_pages pages when it is a CPU tensor."""
    if (not isinstance(block_table, torch.Tensor) or block_table.dtype != torch.int32 or block_table.dim() != 2
            or block_table.shape[0] != B or block_table.shape[1] < 1):
        got = (f"{block_table.dtype} of shape {tuple(block_table.shape)}" if isinstance(block_table, torch.Tensor)
               else type(block_table).__name__)
        raise ValueError(f"block_table: expected an int32 tensor of shape ({B}, max_blocks >= 1), got {got}")
    if n_pages < 1:
        raise ValueError("k_cache: expected at least one page with block_table, got 0")
    if block_table.stride(1) != 1:
        block_table = block_table.contiguous()
    return _on_device("block_table", block_table, 0, n_pages, f"[0, {n_pages}) (k_cache's pages)", device)


def _check(q, k_cache, v_cache, k, v, rotary_cos, rotary_sin, slots, block_table):
    """The tensor arguments' checks; returns (seqlen_cache, the block table on q's device or None)."""
    _validate_qkv(q, k_cache, v_cache, 4, ("q", "k_cache", "v_cache"))
    B, M, H, D = q.shape
    HK = k_cache.shape[2]
    if block_table is not None:
        if slots:
            raise ValueError("cache_batch_idx, block_table: expected at most one (a paged cache names its pages per "
                             "sequence in block_table)")
        if k_cache.shape[1] < 1:
            raise ValueError("k_cache: expected pages of at least one key with block_table, got page size 0")
        block_table = _block_table(block_table, B, k_cache.shape[0], q.device)
        L = block_table.shape[1] * k_cache.shape[1]
    else:
        L = k_cache.shape[1]
        if not slots and k_cache.shape[0] != B:
            raise ValueError(f"k_cache: expected batch {B} (as q; another batch needs cache_batch_idx), "
                             f"got {k_cache.shape[0]}")
    if not 1 <= D <= MAX_HEADDIM:
        raise ValueError(f"q: expected head dim in [1, {MAX_HEADDIM}], got {D}")
    if (k is None) != (v is None):
        raise ValueError("k, v: expected both or neither")
    if k is not None:
        for n, t in (("k", k), ("v", v)):
            _validate_tensor(n, t, 4)
            _validate_last_contiguous(n, t)
            _validate_same(("q", n), (q, t), "dtype")
            _validate_same(("q", n), (q, t), "device")
            if (t.shape[0], t.shape[2], t.shape[3]) != (B, HK, D):
                raise ValueError(f"{n}: expected shape ({B}, seqlen_new, {HK}, {D}), got {tuple(t.shape)}")
        if k.shape != v.shape:
            raise ValueError(f"v: expected shape {tuple(k.shape)} (as k), got {tuple(v.shape)}")
        if k_cache.data_ptr() == v_cache.data_ptr() and k_cache.numel():
            raise ValueError("k_cache, v_cache: expected two tensors, got the same storage twice")
    if (rotary_cos is None) != (rotary_sin is None):
        raise ValueError("rotary_cos, rotary_sin: expected both or neither")
    if rotary_cos is not None and k is None:
        raise ValueError("rotary_cos, rotary_sin: expected with new keys k / v (the rotary is applied to them and to "
                         "q at their positions; flash_attn refuses it too)")
    if rotary_cos is not None:
        for n, t in (("rotary_cos", rotary_cos), ("rotary_sin", rotary_sin)):
            _validate_tensor(n, t, 2)
            _validate_same(("q", n), (q, t), "device")
        if rotary_cos.shape != rotary_sin.shape:
            raise ValueError(f"rotary_sin: expected shape {tuple(rotary_cos.shape)} (as rotary_cos), "
                             f"got {tuple(rotary_sin.shape)}")
        n_ro, half = rotary_cos.shape
        if not 1 <= 2 * half <= D:
            raise ValueError(f"rotary_cos: expected (seqlen_ro, rotary_dim / 2) with rotary_dim in [2, {D}], "
                             f"got shape {tuple(rotary_cos.shape)}")
        if n_ro < L:
            raise ValueError(f"rotary_cos: expected at least seqlen_cache={L} positions, got {n_ro}")
    return L, block_table


def attention_with_kvcache(q, k_cache, v_cache, k=None, v=None, *, cache_seqlens=None, cache_batch_idx=None,
                           block_table=None, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                           rotary_cos=None, rotary_sin=None, rotary_interleaved=True, num_splits=0, return_lse=False,
                           cache_leftpad=None, alibi_slopes=None):
    """One decoding step against a padded KV cache (module docstring).

    Args:
        q: (batch, seqlen_q, heads, headdim).
        k_cache, v_cache: (batch, seqlen_cache, heads_k, headdim), the same dtype / device as q, last dim
            contiguous; written in place when k / v are given. With cache_batch_idx their batch may differ from q's.
        k, v: optional new keys / values (batch, seqlen_new, heads_k, headdim), appended at cache_seqlens.
        cache_seqlens: the filled length of each sequence's cache before this step: an int, or an int32 tensor
            (batch,) (on q's device or the CPU). Default (no k / v): every cache is full.
        cache_batch_idx: optional int32 (batch,): sequence b uses cache row cache_batch_idx[b] (a slot of a cache
            pool); checked against the cache's batch when on the CPU, clamped into it on the GPU. Duplicate slots
            with k / v given: which sequence's keys land is unspecified (as in flash_attn).
        block_table: optional int32 (batch, max_blocks): a paged cache. k_cache / v_cache are then
            (n_pages, page_size, heads_k, headdim), any page_size >= 1, and sequence b's key n lives in page
            ``block_table[b, n // page_size]``, row ``n % page_size``; seqlen_cache = max_blocks · page_size. Entries are
            checked against n_pages when the table is on the CPU, clamped into it on the GPU (as cache_seqlens). Not
            with cache_batch_idx. The kernels read the pages in place, except the forward kernel's calls (seqlen_q ·
            heads / heads_k > 256) where the pool cannot be read through descriptors: those gather the pages first
            while the copy stays within PAGED_GATHER_MAX_BYTES (as varlen_attention's block_table). With CPU
            tensors (the torch path) each sequence's pages are first gathered into a contiguous copy.
        cache_leftpad: optional int32 (batch,): a left-padded cache, sequence b's keys are cache positions
            ``[cache_leftpad[b], cache_seqlens[b] + seqlen_new)`` (flash_attn's ``cache_leftpad``); new keys are still
            written at cache_seqlens[b], rotary positions stay the cache positions. Checked (<= cache_seqlens) when on
            the CPU, clamped on the GPU. Not with block_table.
        softmax_scale, causal, window_size, softcap: as :func:`tilefold.attention`, aligned bottom-right to each
            sequence's length ``cache_seqlens[b] + seqlen_new`` (causal: query i sits at position
            ``cache_seqlens[b] + seqlen_new - seqlen_q + i``; a left padding removes keys, it does not move the
            queries).
        rotary_cos, rotary_sin: optional (seqlen_ro >= seqlen_cache, rotary_dim / 2): rotary embedding of the first
            rotary_dim dims of the new keys (at positions cache_seqlens[b] + i) and of q (at positions
            cache_seqlens[b] + i when causal or windowed -- a window edge >= seqlen_cache does not count --, else
            all at cache_seqlens[b]), computed in fp32; needs k / v.
            rotary_interleaved: pairs (0, 1), (2, 3), ... (GPT-J) if True, else (i, i + rotary_dim / 2) (GPT-NeoX).
        num_splits: split-KV programs per row (0: chosen by occupancy, 1: none).
        alibi_slopes: ALiBi, as :func:`tilefold.attention` (float32 (heads,) or (batch, heads), flash_attn's
            alibi_slopes): query head h's score of query i and key j gets ``-alibi_slopes[h] · |i + seqlen_k - seqlen_q
            - j|`` with seqlen_k = ``cache_seqlens[b] + seqlen_new`` (keys counted from the first after a left
            padding: seqlen_k and j both exclude the cache_leftpad[b] padded positions).
        return_lse: also return lse (batch, heads, seqlen_q) fp32.
    Returns:
        out (batch, seqlen_q, heads, headdim) in q.dtype [, lse]. No gradient flows (inference path).
    """
    L, block_table = _check(q, k_cache, v_cache, k, v, rotary_cos, rotary_sin, cache_batch_idx is not None,
                            block_table)
    B, M, H, D = q.shape
    S_new = 0 if k is None else k.shape[1]
    _validate_grid_rows("q", B, H, q.device)
    scale = _validate_scale(softmax_scale, D)
    left, right = _validate_window(window_size)
    if _validate_bool("causal", causal):
        right = 0 if right < 0 else min(right, 0)
    softcap = _validate_softcap(softcap)
    rotary_interleaved = _validate_bool("rotary_interleaved", rotary_interleaved)
    _validate_bool("return_lse", return_lse)
    num_splits = _validate_num_splits(num_splits)
    alibi = _alibi(alibi_slopes, B, H, q.device)
    if cache_leftpad is not None and block_table is not None:
        raise NotImplementedError("cache_leftpad with block_table: a paged cache has no left padding (flash_attn "
                                  "refuses the pair too)")
    seqlens = _lengths(cache_seqlens, B, L, S_new, q.device)
    pads = _leftpad(cache_leftpad, cache_seqlens, B, L, q.device)  # after cache_seqlens' own checks
    slots = _slots(cache_batch_idx, B, k_cache.shape[0], q.device)
    # no autograd record (an inference path); the guard costs host time, so only where something requires grad
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k_cache, v_cache, k, v))
    with torch.no_grad() if grad else contextlib.nullcontext():
        if rotary_cos is not None:
            steps = torch.arange(max(M, S_new), device=q.device)
            start = seqlens.to(torch.int64)[:, None]
            # q rows at their own positions when causal or windowed, else all at cache_seqlens (flash_attn's rule;
            # like flash_attn, a window edge >= seqlen_cache counts as no window)
            local = 0 <= left < L or 0 <= right < L
            q_pos = start + steps[:M] if local else start.expand(B, M)
            q = _rotate(q, rotary_cos, rotary_sin, q_pos, rotary_interleaved)
            if k is not None:
                k = _rotate(k, rotary_cos, rotary_sin, start + steps[:S_new], rotary_interleaved)
        if k is not None:
            _append(k_cache, v_cache, k, v, seqlens, slots, block_table)
        used = seqlens + S_new if S_new else seqlens
        out, lse = _attend(q, k_cache, v_cache, used, slots, scale, (left, right), softcap, num_splits, block_table,
                           pads, alibi)
    return (out, lse) if return_lse else out


def _gather_pages(cache, block_table):
    """A paged cache (n_pages, page_size, HK, D) as the contiguous (B, max_blocks · page_size, HK, D) of each
    sequence's pages (entries clamped into the pages, as the kernels do)."""
    pages = block_table.to(torch.int64).clamp(0, cache.shape[0] - 1)
    B, nb = pages.shape
    return cache[pages.reshape(-1)].reshape(B, nb * cache.shape[1], *cache.shape[2:])


# Paged prefill (the forward kernel: more than DECODE_MAX_ROWS packed query rows per key head) where the pool cannot be
# read through descriptors (pages that do not hold whole key tiles, a V with its own page stride, no TMA): the forward
# kernel's pointer loads in place ran at 0.55-0.68x the contiguous call, gathering the pages first and then the
# contiguous call at 0.88-1.03x (call 93, H100, bf16 hd128 causal, pages of 16 and 256; benchmarks/NOTES.md). Such calls
# gather while the copy of K and V stays within PAGED_GATHER_MAX_BYTES and read in place beyond (memory over speed).
PAGED_GATHER_MAX_BYTES = 1 << 30


def _gather_first(q, k_pages, v_pages, B, capacity, rows, window) -> bool:
    """Whether a paged call on the kernels gathers its pages first (PAGED_GATHER_MAX_BYTES)."""
    if rows <= splitkv.DECODE_MAX_ROWS:
        return False  # the decode kernel reads pages in place at the contiguous call's speed (call 93)
    if 2 * B * capacity * k_pages.shape[2] * k_pages.shape[3] * k_pages.element_size() > PAGED_GATHER_MAX_BYTES:
        return False
    from ..attention.forward import paged_reads_descriptors
    return not paged_reads_descriptors(q, k_pages, v_pages, window)


def _attend(q, k_cache, v_cache, used, slots, scale, window, softcap, num_splits, block_table=None, pads=None,
            alibi=None):
    B, M, H, D = q.shape
    HK = k_cache.shape[2]
    triton_path = backend_for(q) == "triton"
    if block_table is not None and (not triton_path or _gather_first(q, k_cache, v_cache, B, block_table.shape[1]
                                                                     * k_cache.shape[1], M * (H // HK), window)):
        # the torch path reads contiguous rows; the kernels where _gather_first says so: gather the pages
        k_cache, v_cache, block_table = _gather_pages(k_cache, block_table), _gather_pages(v_cache, block_table), None
    L = block_table.shape[1] * k_cache.shape[1] if block_table is not None else k_cache.shape[1]
    if triton_path:
        S = num_splits
        if S == 0:
            S = splitkv._choose_cached(B, H, HK, M, visible_keys(M, L, window[0]), D, q.dtype, q.device,
                                       window[0] >= 0 or window[1] >= 0, splitkv._kpar_allowed())
        return splitkv._fwd_triton(q, k_cache, v_cache, S, scale, window, softcap, None, None, M, L, seqused_k=used,
                                   cache_batch_idx=slots, block_table=block_table, cache_leftpad=pads, alibi=alibi)
    # torch path: each sequence against its filled keys (split-KV changes nothing but speed there)
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty(B, H, M, dtype=torch.float32, device=q.device)
    rows = slots.tolist() if slots is not None else range(B)
    ends = used.clamp(0, L).tolist()
    starts = [min(max(p, 0), n) for p, n in zip(pads.tolist(), ends)] if pads is not None else [0] * B
    for b, (lo, n, r) in enumerate(zip(starts, ends, rows)):
        out[b:b + 1], lse[b:b + 1] = cpu.attention_fwd_cpu(q[b:b + 1], k_cache[r:r + 1, lo:n], v_cache[r:r + 1, lo:n],
                                                           softmax_scale=scale, window=window, softcap=softcap,
                                                           alibi=None if alibi is None else alibi[b:b + 1])
    return out, lse


def paged_varlen(q, k_pages, v_pages, cu_q, cu_k, max_q, max_k, block_table, scale, window, softcap, num_splits,
                 alibi=None):
    """Packed sequences against a paged cache (``tilefold.varlen_attention(..., block_table=)``, flash_attn's
    ``flash_attn_varlen_func`` with a block table): q (total_q, H, D) with cu_q; sequence b's keys are the first
    ``cu_k[b + 1] - cu_k[b]`` keys of its pages, key n in page ``block_table[b, n // page_size]``, row
    ``n % page_size``. Inputs validated by the caller (lengths within the table's capacity, table on q's device).
    The kernels read the pages in place (the decode kernel for decode shapes, else the forward kernel; lengths from
    cu_k, clamped to the capacity) except where ``_gather_first`` gathers the pages max_k reaches into a (B ·
    those pages' keys) packed copy first (each sequence's first lengths[b] keys attended through ``seqused_k``, clamped
    to that copy's rows as max_k plans); the torch path gathers and packs each sequence's keys."""
    T, H, D = q.shape
    HK, page = k_pages.shape[2], k_pages.shape[1]
    B = cu_q.numel() - 1
    L = block_table.shape[1] * page
    M, N = int(max_q), min(int(max_k), L)
    if backend_for(q) == "triton":
        S = num_splits
        if S == 0:
            S = splitkv._choose_cached(B, H, HK, M, visible_keys(M, N, window[0]), D, q.dtype, q.device,
                                       window[0] >= 0 or window[1] >= 0, splitkv._kpar_allowed())
        used_pages = max(1, -(-N // page))  # the pages max_seqlen_k reaches: the copy scales with it, not the table
        if _gather_first(q, k_pages, v_pages, B, used_pages * page, M * (H // HK), window):
            Lg = used_pages * page
            kg = _gather_pages(k_pages, block_table[:, :used_pages]).reshape(B * Lg, HK, D)
            vg = _gather_pages(v_pages, block_table[:, :used_pages]).reshape(B * Lg, HK, D)
            starts = torch.arange(0, (B + 1) * Lg, Lg, dtype=torch.int32, device=q.device)
            return splitkv._fwd_triton(q, kg, vg, S, scale, window, softcap, cu_q, starts, M, N,
                                       seqused_k=(cu_k[1:] - cu_k[:-1]).contiguous(), alibi=alibi)
        return splitkv._fwd_triton(q, k_pages, v_pages, S, scale, window, softcap, cu_q, cu_k, M, N,
                                   block_table=block_table, alibi=alibi)
    lens = (cu_k[1:] - cu_k[:-1]).clamp(0, L).tolist()
    kg, vg = _gather_pages(k_pages, block_table), _gather_pages(v_pages, block_table)
    kp = torch.cat([kg[b, :n] for b, n in enumerate(lens)]) if B else kg.reshape(0, HK, D)
    vp = torch.cat([vg[b, :n] for b, n in enumerate(lens)]) if B else vg.reshape(0, HK, D)
    cu = torch.zeros(B + 1, dtype=torch.int32, device=q.device)
    if B:
        cu[1:] = torch.tensor(lens, dtype=torch.int32).cumsum(0)
    return splitkv._fwd_torch(q, kp, vp, max(num_splits, 1), scale, window, softcap, cu_q, cu, alibi)
