"""Block sizes per (arch, head dim, mask), next to the kernels. Under the Triton interpreter one small
fixed config is used (speed there is irrelevant; small tiles exercise the tile edges)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from ..common.dispatch import interpreter_enabled


@dataclass(frozen=True)
class KernelConfig:
    BLOCK_M: int
    BLOCK_N: int
    num_warps: int
    num_stages: int


INTERPRETER = KernelConfig(16, 16, 4, 1)


def block_d(D: int) -> int:
    return max(16, triton.next_power_of_2(D))


def fwd_config(D: int, masked: bool, dtype: torch.dtype, device: torch.device) -> KernelConfig:
    if device.type != "cuda" or interpreter_enabled():
        return INTERPRETER
    bd = block_d(D)
    if dtype == torch.float32:
        return KernelConfig(64, 32, 4, 2) if bd <= 128 else KernelConfig(32, 32, 4, 1)
    # Hopper, pointer loads (Triton 3.6): measured choices are in benchmarks/NOTES.md
    if bd <= 64:
        return KernelConfig(128, 64, 4, 3)
    if bd <= 128:
        return KernelConfig(128, 64, 4, 3) if masked else KernelConfig(128, 128, 8, 2)
    return KernelConfig(64, 64, 4, 2)


def bwd_config(D: int, masked: bool, dtype: torch.dtype, device: torch.device) -> KernelConfig:
    if device.type != "cuda" or interpreter_enabled():
        return INTERPRETER
    bd = block_d(D)
    if dtype == torch.float32:
        return KernelConfig(32, 32, 4, 1)
    if bd <= 64:
        return KernelConfig(64, 128, 8, 2)
    if bd <= 128:
        return KernelConfig(64, 128, 8, 2)
    return KernelConfig(32, 64, 4, 1)


def dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs: full-precision products (tf32 would break the 2x accuracy rule)
    return "ieee" if dtype == torch.float32 else "tf32"
