"""Counter-based dropout randomness: Philox-4x32 with 7 rounds, written once in Triton and once in
torch (bit-identical), so a dropout mask is a pure function of (seed, offset, batch·heads + head, row,
column) — independent of tiling, scheduling and device.

Element (row r, column j) of sequence-head ``bh`` uses the counter (j >> 3, r, bh, offset) under the key
(seed_lo, seed_hi); the 128 output bits give 8 uint16 values, element j & 7 takes value j & 7 (word
(j & 7) >> 1, low half first). The element is kept iff that value >= ``threshold = round(p · 65536)``:
dropout probability is p quantized to 1/65536.
"""
import torch
import triton
import triton.language as tl

_M0 = 0xD2511F53
_M1 = 0xCD9E8D57
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
ROUNDS = 7


@triton.jit
def philox_4x32(c0, c1, c2, c3, k0, k1, N_ROUNDS: tl.constexpr):
    """Philox-4x32 on uint32 tensors (counters) with uint32 scalar keys."""
    for _ in tl.static_range(N_ROUNDS):
        a = c0
        b = c2
        hi0 = tl.umulhi(a, 0xD2511F53)
        lo0 = a * 0xD2511F53
        hi1 = tl.umulhi(b, 0xCD9E8D57)
        lo1 = b * 0xCD9E8D57
        c0 = hi1 ^ c1 ^ k0
        c1 = lo1
        c2 = hi0 ^ c3 ^ k1
        c3 = lo0
        k0 = k0 + 0x9E3779B9
        k1 = k1 + 0xBB67AE85
    return c0, c1, c2, c3


@triton.jit
def dropout_keep(seed_lo, seed_hi, offset, bh, offs_m, n0,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, threshold):
    """Boolean [BLOCK_M, BLOCK_N] keep-mask for rows offs_m and columns n0 .. n0 + BLOCK_N (n0 a
    multiple of 8)."""
    k0 = seed_lo.to(tl.uint32, bitcast=True)
    k1 = seed_hi.to(tl.uint32, bitcast=True)
    grp = (n0 // 8 + tl.arange(0, BLOCK_N // 8)).to(tl.uint32)
    c0 = tl.broadcast_to(grp[None, :], [BLOCK_M, BLOCK_N // 8])
    c1 = tl.broadcast_to(offs_m.to(tl.uint32)[:, None], [BLOCK_M, BLOCK_N // 8])
    c2 = tl.zeros([BLOCK_M, BLOCK_N // 8], dtype=tl.uint32) + bh.to(tl.uint32)
    c3 = tl.zeros([BLOCK_M, BLOCK_N // 8], dtype=tl.uint32) + offset.to(tl.uint32, bitcast=True)
    r0, r1, r2, r3 = philox_4x32(c0, c1, c2, c3, k0, k1, 7)
    # x_e = 16-bit value e: x0 = r0 low, x1 = r0 high, x2 = r1 low, ... x7 = r3 high. Each join adds a
    # new minor axis, so nesting (x_e, x_e+4) innermost puts x_e at position e after the reshape.
    a00 = tl.join(r0 & 0xFFFF, r2 & 0xFFFF)
    a01 = tl.join(r0 >> 16, r2 >> 16)
    a10 = tl.join(r1 & 0xFFFF, r3 & 0xFFFF)
    a11 = tl.join(r1 >> 16, r3 >> 16)
    u16 = tl.reshape(tl.join(tl.join(a00, a10), tl.join(a01, a11)), [BLOCK_M, BLOCK_N])
    return u16 >= threshold.to(tl.uint32)


# ---------------------------------------------------------------------------------------------------
# torch (int64 arithmetic on uint32 values)

_MASK32 = 0xFFFFFFFF


def _mulhilo(a: torch.Tensor, m: int):
    ah, al = a >> 16, a & 0xFFFF
    mh, ml = m >> 16, m & 0xFFFF
    mid = ah * ml + al * mh
    low = (mid << 16) + al * ml
    hi = ah * mh + (low >> 32)
    return hi & _MASK32, low & _MASK32


def philox_4x32_torch(c0, c1, c2, c3, k0: int, k1: int, rounds: int = ROUNDS):
    for _ in range(rounds):
        hi0, lo0 = _mulhilo(c0, _M0)
        hi1, lo1 = _mulhilo(c2, _M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return c0, c1, c2, c3


def dropout_keep_torch(seed: int, offset: int, bh: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                       threshold: int) -> torch.Tensor:
    """keep[..., r, j] for broadcastable int64 tensors bh (..., 1, 1), rows (M, 1), cols (1, N)."""
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    c0 = cols >> 3
    c0, c1, c2 = torch.broadcast_tensors(c0, rows, bh)
    c3 = torch.full_like(c0, offset & _MASK32)
    r = philox_4x32_torch(c0, c1, c2, c3, k0, k1)
    e = torch.broadcast_to(cols & 7, c0.shape)
    word = torch.stack(r, -1).gather(-1, (e >> 1).unsqueeze(-1)).squeeze(-1)
    u16 = torch.where((e & 1) == 0, word & 0xFFFF, word >> 16)
    return u16 >= threshold


def dropout_threshold(p: float) -> int:
    return min(int(round(p * 65536.0)), 65535) if p > 0 else 0


def as_int32(x: int) -> int:
    """A uint32 value as the signed int32 with the same bits (kernel arguments stay i32)."""
    x &= _MASK32
    return x - (1 << 32) if x >= (1 << 31) else x
