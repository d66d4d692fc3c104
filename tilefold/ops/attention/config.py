"""Block sizes per (arch, head dim, mask), next to the kernels. Under the Triton interpreter one small
fixed config is used (speed there is irrelevant; small tiles exercise the tile edges)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
from ..common.host import next_pow2

from ..common.dispatch import interpreter_enabled


@dataclass(frozen=True)
class KernelConfig:
    BLOCK_M: int
    BLOCK_N: int
    num_warps: int
    num_stages: int
    use_tma: bool = False
    warp_spec: bool = False
    # the config to run when the tensors cannot take descriptors (strides not 16-byte aligned, ...)
    pointer: "KernelConfig | None" = None
    # backward only: the dQ kernel's own config (BLOCK_M query rows, BLOCK_N keys); None = this one with
    # the roles swapped (BLOCK_N query rows against BLOCK_M-key tiles)
    dq: "KernelConfig | None" = None
    # backward only: programs per key block of the dK/dV kernel, each accumulating and storing 1/split of
    # the head dim's dK/dV columns (S and dP still over the full head dim: 1.5x its matmuls at 2) -- half
    # the fp32 accumulator registers. 1 or 2; fp32 inputs and halves under 16 columns run 1.
    dkdv_split_d: int = 1

    def __post_init__(self):
        if self.dkdv_split_d not in (1, 2):
            raise ValueError(f"KernelConfig.dkdv_split_d: expected 1 or 2, got {self.dkdv_split_d!r}")

    def for_pointers(self) -> "KernelConfig":
        return self.pointer if self.pointer is not None else self

    def dq_config(self) -> "KernelConfig":
        if self.dq is not None:
            return self.dq
        ptr = self.pointer.dq_config() if self.pointer is not None else None
        return KernelConfig(self.BLOCK_N, self.BLOCK_M, self.num_warps, self.num_stages, self.use_tma,
                            pointer=ptr)


# Program order over the grid: "head" (default) = head by head, heavy causal blocks first within a head;
# "lpt" = the heaviest block of every head, then the next of every head, ... (longest processing time
# first over the whole grid, for the causal triangle's tail). Measured (H200, hd128 bf16, causal 8k/16k,
# benchmarks/NOTES.md): lpt is 4-11% slower than head order in the forward and every backward config --
# with head order the ~132 resident programs belong to one or two heads and share their K/V (forward,
# dQ) or Q/dO (dK/dV) in L2; lpt spreads them over all heads. Kept selectable for other shapes.
ORDER = os.environ.get("TILEFOLD_ORDER", "head")

# dK/dV kernel: one query-tile loop, the mask computed (behind a run-time branch) only on the tiles that
# need it, instead of three loops (masked, full, masked). Offline sm_90 compile, hd128 64x128 8w 3st,
# causal: spill instructions 1631 -> 507, stack 2096 -> 1072 B. Timed on an H200 (bf16 B2 H16,
# benchmarks/NOTES.md "dK/dV one loop, measured"): hd128 causal backward 3.98 -> 3.73 ms at 8k and
# 15.3 -> 14.1 ms at 16k; but hd128 non-causal 5-9% slower, hd64 5-9% slower either way, hd256 within
# 1%. So "auto" (the default) takes one loop only for a masked (causal/window) 16-bit hd 65..128 call
# (timed: hd128 causal only; windows and padded head dims 65..127 follow by the same spill argument, untimed);
# TILEFOLD_DKDV_ONE_LOOP=1 / 0 forces it on / off. Results are bitwise those of the three loops.
DKDV_ONE_LOOP = os.environ.get("TILEFOLD_DKDV_ONE_LOOP", "auto")


def _switch(name: str, default: str = "auto") -> str:
    """An on / off / auto environment switch: "0" / "false" / "off" / "no" read as "0", "1" / "true" / "on" /
    "yes" as "1", anything else as given (lower case)."""
    value = os.environ.get(name, default).strip().lower()
    if value in ("false", "off", "no"):
        return "0"
    if value in ("true", "on", "yes"):
        return "1"
    return value


# Forward on Hopper through the Gluon kernel (forward_sm90.py: warp-specialized, asynchronous wgmma, the P.V
# of one tile overlapping the softmax of the next) where it applies. Measured (H200, bf16, B2 H16, 8k/16k,
# benchmarks/NOTES.md "Gluon forward"): hd128 582/533/589/569 TFLOP/s against this file's Triton kernel's
# 545/499/532/520 and cuDNN's 605/545/593/552 in the same run; hd64 +10-16% over the Triton kernel.
# "0" keeps every forward on forward.py's kernel.
FWD_SM90 = _switch("TILEFOLD_FWD_SM90")

# dK / dV and dQ on Hopper through the Gluon kernels (backward_sm90.py: warp-specialized, the accumulators of
# 64 keys / 64 query rows per warpgroup in registers at up to 256 per thread, asynchronous wgmma) where they
# apply (fp16 / bf16, head dim 64 / 128 / 256 (256 unless TILEFOLD_BWD_SM90_HD256=0), fixed lengths, no softcap; dropout too unless
# TILEFOLD_BWD_SM90_DROPOUT=0; each kernel has its own batch condition); the preprocess stays backward.py's.
# Measured (H200, bf16, B2 H16, hd128 8k/16k, benchmarks/NOTES.md "Gluon backward"): the whole backward
# +11-14% over these kernels' Triton versions (call 32), 1.48-1.57x FA2 (call 33). "0" keeps every backward on
# backward.py's kernels.
BWD_SM90 = _switch("TILEFOLD_BWD_SM90")


def dkdv_one_loop(block_d: int, masked: bool, exact: bool) -> bool:
    """Whether the dK/dV kernel runs its one-loop variant (see DKDV_ONE_LOOP)."""
    mode = DKDV_ONE_LOOP
    if mode in (True, "1"):
        return True
    if mode in (False, "0"):
        return False
    if mode != "auto":
        raise ValueError(f"TILEFOLD_DKDV_ONE_LOOP must be 0, 1 or auto, got {mode!r}")
    return masked and not exact and block_d == 128


def lpt_order(left: int, right: int, varlen: bool) -> bool:
    """Whether the kernels take the longest-first program order (see ORDER)."""
    if ORDER not in ("head", "lpt"):
        raise ValueError(f"TILEFOLD_ORDER: expected 'head' or 'lpt', got {ORDER!r}")
    return ORDER == "lpt"


INTERPRETER = KernelConfig(16, 16, 4, 1)


def block_d(D: int) -> int:
    return max(16, next_pow2(D))


def fwd_config(D: int, masked: bool, dtype: torch.dtype, device: torch.device,
               dropout: bool = False) -> KernelConfig:
    if device.type != "cuda" or interpreter_enabled():
        return INTERPRETER
    bd = block_d(D)
    if dtype == torch.float32:
        return KernelConfig(64, 32, 4, 2) if bd <= 128 else KernelConfig(32, 32, 4, 1)
    # Hopper, pointer loads (Triton 3.6). Sweep v1 (H200, hd128, bf16, 8k/16k; benchmarks/NOTES.md):
    # 128x64 with 8 warps, 3 stages was best or within 3% of best, causal and not (462-476 TFLOP/s
    # non-causal, 426-449 causal); 4 warps at 128x64 was 3x slower (151).
    # Sweep v2 (same shapes): K/V through tensor descriptors (TMA) at 128x128, 8 warps, 3 stages gave
    # 546-549 non-causal and 485-501 causal (pointer 128x64 in the same run: 454-460 / 433-442).
    # Without descriptor-compatible strides the same tile runs with pointer loads (453 in sweep v1).
    # Dropout v1 (join/reshape Philox tile) needed 247 KB of shared memory at 128x128x3 and ran 128x64.
    # Dropout v2 generates the mask in the score tile's own layout (no layout conversion): 128x128,
    # 8 warps, 3 stages compiles to 230400 B (the p = 0 figure, <= 232448) and 254 registers, no spills
    # (offline sm_90 compile, benchmarks/NOTES.md "Dropout"), so dropout uses the p = 0 tile again.
    if bd <= 128:
        return KernelConfig(128, 128, 8, 3, use_tma=True)
    # Head dim 256, sweep hd256 (H200, bf16, 8k, benchmarks/NOTES.md): descriptors at 128x64, 8 warps,
    # 2 stages: 518 TFLOP/s non-causal, 502 causal (FA2 320 / 304, old pointer 64x64x4w 247 / 251 in
    # the same run). Pointer loads at that tile spill (offline compile): the old tile stays for them.
    # Non-power-of-two head dims > 128 (BLOCK_D 256) take pointer loads.
    return KernelConfig(128, 64, 8, 2, use_tma=True, pointer=KernelConfig(64, 64, 4, 2))


def bwd_config(D: int, masked: bool, dtype: torch.dtype, device: torch.device) -> KernelConfig:
    if device.type != "cuda" or interpreter_enabled():
        return INTERPRETER
    bd = block_d(D)
    if dtype == torch.float32:
        return KernelConfig(32, 32, 4, 1)
    # Sweep v1 (H200, hd128): BLOCK_M=64 query tiles against 128-key blocks, 8 warps, 3 stages was
    # best of six (401-407 TFLOP/s non-causal, 360-376 causal); 4 warps at that tile was 3x slower.
    if bd <= 128:
        return KernelConfig(64, 128, 8, 3)
    # Head dim 256, sweep hd256 (H200, bf16, 8k): descriptors at 64x64, 8 warps, 2 stages: 187 TFLOP/s
    # non-causal, 180 causal (FA2 258 / 248; old pointer 32x64x4w 72 / 66 in the same run). It still
    # spills (offline: 1760 B stack in dK/dV) -- the dK+dV accumulators are 128 registers per thread.
    # dkdv_split_d=2 halves them (offline: no spills inside the loops at 32x64 8w 3st / 32x128 8w 2st).
    # Sweep hd256 split-D (same run, 8k): unsplit 64x64 188 non-causal / 181 causal; split 2 at 32 query
    # rows x 128 keys, 8 warps, 2 stages: 191 / 207 (64x64 split 151 / 145, 32x64 122 / 121). dQ keeps
    # the 64x64 8w 2st tile (and its pointer tile); pointer loads keep the unsplit 32x64 4w tile.
    return KernelConfig(32, 128, 8, 2, use_tma=True, dkdv_split_d=2,
                        dq=KernelConfig(64, 64, 8, 2, use_tma=True, pointer=KernelConfig(64, 32, 4, 1)),
                        pointer=KernelConfig(32, 64, 4, 1))


def dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs: full-precision products (tf32 would break the 2x accuracy rule)
    return "ieee" if dtype == torch.float32 else "tf32"
