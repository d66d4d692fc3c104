"""Shared plumbing of the GLA kernels (one op, several modes): the gate floor, the sequence and chunk
tables every kernel reads, and the dot precision. Host code only (no Triton import: the torch path uses it).

Every kernel treats the packed batch as N sequences: a dense [B, T] batch is N = B sequences of length T
at offsets b*T, a varlen batch reads them from ``cu_seqlens``. One code path, no IS_VARLEN copies.
"""
from __future__ import annotations

import torch

from ..common.host import cdiv

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
