"""flash_attn 2.x names and argument lists mapped onto tilefold, so code switches by one import::

    from tilefold.compat.flash_attn_interface import flash_attn_func, flash_attn_varlen_func

Layouts and semantics follow flash_attn 2.x (bottom-right causal, window_size, softcap, fused dropout,
lse (batch, heads, seqlen_q) / (heads, total_q)), with flash_attn's readings of its arguments: any negative
window edge is unbounded, ``softcap <= 0`` is off, and q / k / v whose last dimension is strided are copied
(flash_attn's ``maybe_contiguous``). Differences:

- ``return_attn_probs=True`` returns (out, lse, S) with S the exact probabilities before dropout, fp32, shaped
  (batch, heads, seqlen_q, seqlen_k) (varlen: padded to the max lengths), the sign bit set where an element was
  dropped (see ``tilefold.attention``) -- also with ``dropout_p=0``, where flash_attn returns an empty tensor:
  S is O(seqlen_q · seqlen_k) memory, so ask for it only when needed (``tilefold.attention(..., return_lse=True)``
  gives (out, lse) alone).
- A query row that sees no key has lse ``-inf`` (the identity of the state merge, ``tilefold.merge_state``);
  flash_attn writes ``+inf`` there. Its output is 0 in both.
- One-sided windows (``(left, -1)`` / ``(-1, right)``) follow the documented formula with -1 unbounded; with
  seqlen_q > seqlen_k flash_attn 2's kernels bound the open side at seqlen_k instead, so rows near the top can
  differ.
- ``flash_attn_with_kvcache``: ``block_table`` (paged KV)
  takes any page size (flash_attn 2 wants multiples of 256). Lengths, slots, left pads and block tables in a CUDA tensor are
  not checked against the cache (that needs a device sync per step); the kernels clamp them and the cache write
  skips positions outside the cache.
- ``flash_attn_varlen_func(block_table=)`` (paged K / V): forward only (NotImplementedError when an input
  requires grad or with dropout); ``return_attn_probs=True`` gives (out, lse, an empty tensor), as flash_attn does
  without dropout; any page size; see ``tilefold.varlen_attention``.
- ``alibi_slopes``: flash_attn's ALiBi (forward and backward: the forward on the Hopper Gluon kernel where it applies,
  the backward on the Triton kernels; split-KV, the decode kernel, paged
  K / V and ``flash_attn_with_kvcache``, where the distance counts keys after a left padding). With ``causal=True`` flash_attn 2 adds only ``slope · j`` (the
  row constant cancels in the softmax), so its lse is larger by ``slope · (i + seqlen_k - seqlen_q)``; tilefold's lse
  includes the whole bias. Outputs agree.
"""
from __future__ import annotations

import torch

from ..ops.attention.interface import attention, varlen_attention
from ..ops.decode.kvcache import attention_with_kvcache
from ..ops.common.validate import _is_int, _is_real


def _desc(x):
    """A packed argument's shape for an error message (or its type when it is not a tensor)."""
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__

__all__ = ["flash_attn_func", "flash_attn_varlen_func", "flash_attn_qkvpacked_func",
           "flash_attn_kvpacked_func", "flash_attn_varlen_qkvpacked_func", "flash_attn_varlen_kvpacked_func",
           "flash_attn_with_kvcache"]


def _fa2_options(window_size, softcap):
    """flash_attn's readings: a negative window edge is unbounded (-1 here), softcap <= 0 is off. Anything else
    passes through unchanged, for tilefold's validation to accept or refuse."""
    if isinstance(window_size, (tuple, list)) and len(window_size) == 2 and all(_is_int(w) for w in window_size):
        window_size = tuple(-1 if w < 0 else w for w in window_size)
    if _is_real(softcap) and softcap <= 0:
        softcap = 0.0
    return window_size, softcap


def _contiguous_last(*ts):
    """q / k / v with a strided last dimension copied, as flash_attn's maybe_contiguous (tilefold's kernels read
    the head dim at stride 1; the other strides stay as given)."""
    return tuple(t.contiguous() if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[-1] > 1
                 and t.stride(-1) != 1 else t for t in ts)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                    softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """q (batch, seqlen_q, heads, d), k/v (batch, seqlen_k, heads_k, d) -> out, or (out, lse, S)."""
    q, k, v = _contiguous_last(q, k, v)
    window_size, softcap = _fa2_options(window_size, softcap)
    return attention(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                     softcap=softcap, deterministic=deterministic, dropout_p=dropout_p,
                     return_attn_probs=return_attn_probs, alibi_slopes=alibi_slopes)


def flash_attn_qkvpacked_func(qkv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                              softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """qkv (batch, seqlen, 3, heads, d): views, no copy."""
    if not isinstance(qkv, torch.Tensor) or qkv.dim() != 5 or qkv.shape[2] != 3:
        raise ValueError(f"qkv: expected shape (batch, seqlen, 3, heads, d), got {_desc(qkv)}")
    return flash_attn_func(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], dropout_p, softmax_scale, causal,
                           window_size, softcap, alibi_slopes, deterministic, return_attn_probs)


def flash_attn_kvpacked_func(q, kv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                             softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """q (batch, seqlen_q, heads, d), kv (batch, seqlen_k, 2, heads_k, d)."""
    if not isinstance(kv, torch.Tensor) or kv.dim() != 5 or kv.shape[2] != 2:
        raise ValueError(f"kv: expected shape (batch, seqlen_k, 2, heads_k, d), got {_desc(kv)}")
    return flash_attn_func(q, kv[:, :, 0], kv[:, :, 1], dropout_p, softmax_scale, causal, window_size,
                           softcap, alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                           alibi_slopes=None, deterministic=False, return_attn_probs=False, block_table=None):
    """q (total_q, heads, d), k/v (total_k, heads_k, d), cu_seqlens int32 (batch + 1,); with ``block_table`` k / v
    are page pools (n_pages, page_size, heads_k, d) and cu_seqlens_k gives each sequence's length in its pages."""
    q, k, v = _contiguous_last(q, k, v)
    window_size, softcap = _fa2_options(window_size, softcap)
    if block_table is not None and return_attn_probs and _is_real(dropout_p) and dropout_p == 0:
        # flash_attn returns (out, lse, an empty tensor) here (it has probabilities only with dropout): the usual way
        # to get lse; tilefold has no probabilities for paged K / V
        out, lse = varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                    softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                                    softcap=softcap, deterministic=deterministic, return_lse=True,
                                    block_table=block_table, alibi_slopes=alibi_slopes)
        return out, lse, q.new_empty(0)
    return varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                            softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                            softcap=softcap, deterministic=deterministic, dropout_p=dropout_p,
                            return_attn_probs=return_attn_probs, block_table=block_table, alibi_slopes=alibi_slopes)


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None,
                                     causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                                     deterministic=False, return_attn_probs=False):
    """qkv (total, 3, heads, d)."""
    if not isinstance(qkv, torch.Tensor) or qkv.dim() != 4 or qkv.shape[1] != 3:
        raise ValueError(f"qkv: expected shape (total, 3, heads, d), got {_desc(qkv)}")
    return flash_attn_varlen_func(qkv[:, 0], qkv[:, 1], qkv[:, 2], cu_seqlens, cu_seqlens, max_seqlen,
                                  max_seqlen, dropout_p, softmax_scale, causal, window_size, softcap,
                                  alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_kvpacked_func(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                    dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                                    softcap=0.0, alibi_slopes=None, deterministic=False,
                                    return_attn_probs=False):
    """q (total_q, heads, d), kv (total_k, 2, heads_k, d)."""
    if not isinstance(kv, torch.Tensor) or kv.dim() != 4 or kv.shape[1] != 2:
        raise ValueError(f"kv: expected shape (total_k, 2, heads_k, d), got {_desc(kv)}")
    return flash_attn_varlen_func(q, kv[:, 0], kv[:, 1], cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                  max_seqlen_k, dropout_p, softmax_scale, causal, window_size, softcap,
                                  alibi_slopes, deterministic, return_attn_probs)


def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, rotary_cos=None, rotary_sin=None, cache_seqlens=None,
                            cache_batch_idx=None, cache_leftpad=None, block_table=None, softmax_scale=None,
                            causal=False, window_size=(-1, -1), softcap=0.0, rotary_interleaved=True,
                            alibi_slopes=None, num_splits=0, return_softmax_lse=False):
    """flash_attn's decoding step: k / v appended to the caches in place at cache_seqlens, then q against each
    sequence's filled keys (``tilefold.attention_with_kvcache``)."""
    window_size, softcap = _fa2_options(window_size, softcap)
    q, k, v = _contiguous_last(q, k, v)
    return attention_with_kvcache(q, k_cache, v_cache, k, v, cache_seqlens=cache_seqlens,
                                  cache_batch_idx=cache_batch_idx, block_table=block_table,
                                  softmax_scale=softmax_scale,
                                  causal=causal, window_size=window_size, softcap=softcap, rotary_cos=rotary_cos,
                                  rotary_sin=rotary_sin, rotary_interleaved=rotary_interleaved, num_splits=num_splits,
                                  return_lse=return_softmax_lse, cache_leftpad=cache_leftpad,
                                  alibi_slopes=alibi_slopes)
