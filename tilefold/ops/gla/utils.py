"""Shared plumbing of the GLA kernels (one op, several modes): the gate floor, the sequence and chunk
tables every kernel reads, and the dot precision.

Every kernel treats the packed batch as N sequences: a dense [B, T] batch is N = B sequences of length T
at offsets b*T, a varlen batch reads them from ``cu_seqlens``. One code path, no IS_VARLEN copies.
"""
from __future__ import annotations

import torch
import triton
from ..common.host import cdiv, next_pow2, rows_grid
from ..common.masks import grid_row
import triton.language as tl

# Gates are clamped from below at G_FLOOR in every mode (torch and Triton). exp(-30) = 9.4e-14 is below
# fp32 resolution relative to the state it decays, so a floored gate is an exact reset to fp32 precision,
# and its gradient is exactly 0 (as autograd gives for exp(-inf) or an underflowed exp(-1e4)). The floor
# keeps the chunk-local cumulative sums finite (a chunk of 64 positions reaches at most -1920), so
# differences of cumulative sums never meet -inf - -inf (NaN) or lose every digit to -3e37 magnitudes.
G_FLOOR = -30.0

# Tests set POISON so every output buffer starts as NaN: an element a kernel forgets to write fails.
POISON = False


def empty(*shape, dtype, device) -> torch.Tensor:
    if POISON:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(*shape, dtype=dtype, device=device)


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs get true fp32 dots (tf32 would miss the 1e-4 bar); fp16/bf16 use the tensor cores."""
    return "ieee" if dtype == torch.float32 else "tf32"


def dense_cu_seqlens(B: int, T: int, device) -> torch.Tensor:
    return torch.arange(B + 1, dtype=torch.int32, device=device) * T


def seq_info(B: int, T: int, cu_seqlens: torch.Tensor | None, device, BT: int):
    """(N, cu_seqlens int32 on device, chunk_indices int32 [NT_total, 2] (seq, chunk), chunk_offsets int32
    [N+1] (first global chunk of each sequence), NT_total, BT)."""
    if cu_seqlens is None:
        N = B
        cu = dense_cu_seqlens(B, T, device)
        nt = cdiv(T, BT)
        lens_chunks = [nt] * B
    else:
        N = cu_seqlens.numel() - 1
        cu = cu_seqlens.to(device=device, dtype=torch.int32)
        lens = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
        lens_chunks = [cdiv(int(n), BT) for n in lens]
    offsets = [0]
    idx = []
    for n, c in enumerate(lens_chunks):
        offsets.append(offsets[-1] + c)
        idx.extend((n, i) for i in range(c))
    chunk_offsets = torch.tensor(offsets, dtype=torch.int32, device=device)
    if idx:
        chunk_indices = torch.tensor(idx, dtype=torch.int32, device=device)
    else:
        chunk_indices = torch.zeros((0, 2), dtype=torch.int32, device=device)
    return N, cu, chunk_indices, chunk_offsets, offsets[-1], BT


@triton.jit
def gla_bwd_dg_kernel(q, k, dq, dk, g, dg, ht, dht, cu_seqlens, H, K: tl.constexpr, V: tl.constexpr,
                      BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, HAS_DHT: tl.constexpr,
                      G_MIN: tl.constexpr):
    """dg_t = sum_{s >= t in its sequence} (q_s*dq_s - k_s*dk_s) + sum_v(h_T * dh_T), zero where the
    gate was floored. Grid (cdiv(K, BK), N*H); reverse over the sequence, one carry per key column."""
    i_k, i_nh = tl.program_id(0), grid_row(1)[0]
    i_n, i_h = i_nh // H, i_nh % H
    bos = tl.load(cu_seqlens + i_n).to(tl.int64)
    eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    T = eos - bos
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    carry = tl.zeros([BK], dtype=tl.float32)
    if HAS_DHT:
        for i_v in range(0, tl.cdiv(V, BV)):
            o_v = i_v * BV + tl.arange(0, BV)
            m = m_k[:, None] & (o_v < V)[None, :]
            off = i_nh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
            b_h = tl.load(ht + off, mask=m, other=0.0)
            b_dh = tl.load(dht + off, mask=m, other=0.0)
            carry += tl.sum(b_h * b_dh, axis=1)
    NT = tl.cdiv(T, BT)
    for i in range(0, NT):
        i_t = NT - 1 - i
        o_t = i_t * BT + tl.arange(0, BT)
        m = (o_t < T)[:, None] & m_k[None, :]
        off = (bos + o_t)[:, None] * H * K + i_h * K + o_k[None, :]
        b_q = tl.load(q + off, mask=m, other=0.0).to(tl.float32)
        b_k = tl.load(k + off, mask=m, other=0.0).to(tl.float32)
        b_dq = tl.load(dq + off, mask=m, other=0.0).to(tl.float32)
        b_dk = tl.load(dk + off, mask=m, other=0.0).to(tl.float32)
        b_g = tl.load(g + off, mask=m, other=0.0).to(tl.float32)
        b_x = b_q * b_dq - b_k * b_dk
        # reverse cumsum inside the block: total - inclusive prefix + self
        b_dg = tl.sum(b_x, axis=0)[None, :] - tl.cumsum(b_x, axis=0) + b_x + carry[None, :]
        carry += tl.sum(b_x, axis=0)
        b_dg = tl.where(b_g >= G_MIN, b_dg, 0.0)
        tl.store(dg + off, b_dg.to(dg.dtype.element_ty), mask=m)


def gla_bwd_dg(q, k, dq, dk, g, cu, N, ht=None, dht=None):
    """q, k, dq, dk, g: [B, T, H, K] (contiguous); returns dg like g."""
    H, K = q.shape[-2], q.shape[-1]
    dg = empty(*g.shape, dtype=g.dtype, device=g.device)
    BK = min(64, next_pow2(K))
    has_dht = dht is not None and ht is not None
    V = dht.shape[-1] if has_dht else 1
    BV = min(64, next_pow2(V))
    grid = (cdiv(K, BK), *rows_grid(N, H))
    if N * H > 0:
        gla_bwd_dg_kernel[grid](q, k, dq, dk, g, dg, ht if has_dht else q, dht.contiguous() if has_dht else q,
                                cu, H, K, V, 64, BK, BV, has_dht, G_FLOOR)
    return dg
