"""Triton merge of attention states: the ⊕ of ``tilefold.ops.common.fold.merge_state`` folded over
N stacked states (and optionally one more state), for the public layouts.

Layout (batched): out (N, B, M, H, D), lse (N, B, H, M). Varlen tensors are passed as batch 1
(out (N, 1, T, H, D), lse (N, 1, H, T)) — views, no copy. One program owns BLOCK_M query rows of one
(batch, head) and folds the N states in registers (fp32); the result is written once, in the output
dtype. This is also the combine kernel of split-KV (level 2 of the hierarchical reduction).
"""
from __future__ import annotations

import torch
import triton
from ..common.host import cdiv, next_pow2
import triton.language as tl

from ..common.dispatch import interpreter_enabled
from ..common.fold import merge_state


@triton.jit
def _load_state(o_ptrs, l_ptrs, row_ok, d_ok, EVEN_D: tl.constexpr):
    if EVEN_D:
        o = tl.load(o_ptrs, mask=row_ok[:, None], other=0.0).to(tl.float32)
    else:
        o = tl.load(o_ptrs, mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
    lse = tl.load(l_ptrs, mask=row_ok, other=float("-inf")).to(tl.float32)
    return o, lse


@triton.jit
def merge_fwd_kernel(
    OA, LA, OB, LB, O, LSE,
    stride_oan, stride_oab, stride_oam, stride_oah,
    stride_lan, stride_lab, stride_lah, stride_lam,
    stride_obb, stride_obm, stride_obh,
    stride_lbb, stride_lbh, stride_lbm,
    stride_ob_, stride_om, stride_oh,
    stride_lb_, stride_lh, stride_lm,
    N, H, M, D,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, HAS_B: tl.constexpr, EVEN_D: tl.constexpr,
):
    """(O, LSE)[b, rows, h] = ⊕_{i<N} A[i] (⊕ B if HAS_B). Grid (row blocks · B · H,): one flat axis (CUDA allows
    2^31 - 1 programs there, 65535 on the others), row block fastest."""
    pid = tl.program_id(0)
    n_m = tl.cdiv(M, BLOCK_M)
    pid_m = pid % n_m
    pid_bh = pid // n_m
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < M
    d_ok = offs_d < D
    rows = offs_m.to(tl.int64)
    o_ptrs = OA + b * stride_oab + h * stride_oah + rows[:, None] * stride_oam + offs_d[None, :]
    l_ptrs = LA + b * stride_lab + h * stride_lah + rows * stride_lam
    o_acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    lse_acc = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    for _ in range(0, N):
        o_i, lse_i = _load_state(o_ptrs, l_ptrs, row_ok, d_ok, EVEN_D)
        o_acc, lse_acc = merge_state(o_acc, lse_acc, o_i, lse_i)
        o_ptrs += stride_oan
        l_ptrs += stride_lan
    if HAS_B:
        ob_ptrs = OB + b * stride_obb + h * stride_obh + rows[:, None] * stride_obm + offs_d[None, :]
        lb_ptrs = LB + b * stride_lbb + h * stride_lbh + rows * stride_lbm
        o_i, lse_i = _load_state(ob_ptrs, lb_ptrs, row_ok, d_ok, EVEN_D)
        o_acc, lse_acc = merge_state(o_acc, lse_acc, o_i, lse_i)
    out_ptrs = O + b * stride_ob_ + h * stride_oh + rows[:, None] * stride_om + offs_d[None, :]
    if EVEN_D:
        tl.store(out_ptrs, o_acc.to(O.dtype.element_ty), mask=row_ok[:, None])
    else:
        tl.store(out_ptrs, o_acc.to(O.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
    tl.store(LSE + b * stride_lb_ + h * stride_lh + rows * stride_lm, lse_acc, mask=row_ok)


def _block_m(D: int, M: int, device) -> int:
    if device.type != "cuda" or interpreter_enabled():
        return 16
    bm = 64 if D <= 128 else 32
    return max(16, min(bm, next_pow2(max(M, 1))))


def merge_fwd(outs, lses, out_b=None, lse_b=None, out_dtype=None):
    """⊕ over dim 0 of ``outs`` (N, B, M, H, D) / ``lses`` (N, B, H, M), then ⊕ (out_b, lse_b) if
    given ((B, M, H, D) / (B, H, M)). Last dim of the outs must be contiguous. Returns (out (B, M, H, D)
    in ``out_dtype`` (default outs.dtype), lse (B, H, M) fp32)."""
    N, B, M, H, D = outs.shape
    out = torch.empty((B, M, H, D), device=outs.device, dtype=out_dtype or outs.dtype)
    lse = torch.empty((B, H, M), device=outs.device, dtype=torch.float32)
    if out.numel() == 0 and lse.numel() == 0:
        return out, lse
    has_b = out_b is not None
    BD = max(16, next_pow2(D))
    BM = _block_m(D, M, outs.device)
    ob = out_b if has_b else outs
    lb = lse_b if has_b else lses
    sob = (ob.stride(0), ob.stride(1), ob.stride(2)) if has_b else (0, 0, 0)
    slb = (lb.stride(0), lb.stride(1), lb.stride(2)) if has_b else (0, 0, 0)
    grid = (cdiv(M, BM) * B * H,)
    merge_fwd_kernel[grid](
        outs, lses, ob, lb, out, lse,
        outs.stride(0), outs.stride(1), outs.stride(2), outs.stride(3),
        lses.stride(0), lses.stride(1), lses.stride(2), lses.stride(3),
        *sob, *slb,
        out.stride(0), out.stride(1), out.stride(2),
        lse.stride(0), lse.stride(1), lse.stride(2),
        N, H, M, D,
        BLOCK_M=BM, BLOCK_D=BD, HAS_B=has_b, EVEN_D=BD == D,
        num_warps=4,
    )
    return out, lse
