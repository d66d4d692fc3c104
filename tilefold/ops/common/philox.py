"""Counter-based dropout randomness: Philox-4x32 with 7 rounds, written once in Triton and once in
torch (bit-identical), so a dropout mask is a pure function of (seed, offset, batch·heads + head, row,
column) — independent of tiling, scheduling and device.

Element (row r, column j) of sequence-head ``bh`` belongs to the group of 8 elements
{r, r ^ 8} × {j, j ^ 1, j ^ 8, j ^ 9}: the counter is (ckey, rkey, bh, offset) under the key (seed_lo,
seed_hi), with rkey = r without bit 3 (((r >> 4) << 3) | (r & 7)) and ckey = j without bits 0 and 3
(((j >> 4) << 2) | ((j >> 1) & 3)). The 128 output bits give 8 uint16 values; the element takes value
e = 4·(r bit 3) + 2·(j bit 3) + (j bit 0) (word e >> 1, low half first). The group is what one thread
holds of a tensor-core accumulator tile (v2, see dropout_keep). The element is kept iff that value >=
``threshold = round(p · 65536)``: dropout probability is p quantized to 1/65536.
"""
import triton
import triton.language as tl

# the torch mirror and the host helpers, re-exported: the kernels' launchers import them from here
from .philox_torch import (RNG_ARGS, as_int32, dropout_args, dropout_keep_torch, dropout_threshold,  # noqa: F401
                           keep_scale, rng_ptr)


@triton.jit
def philox_4x32(c0, c1, c2, c3, k0, k1, N_ROUNDS: tl.constexpr):
    """Philox-4x32 on uint32 tensors (counters) with uint32 scalar keys."""
    for _ in tl.static_range(N_ROUNDS):
        a = c0
        b = c2
        # one 32x32 -> 64-bit product each (mul.wide.u32: one IMAD.WIDE instead of IMAD.HI + IMAD)
        p0 = a.to(tl.uint64) * 0xD2511F53
        p1 = b.to(tl.uint64) * 0xCD9E8D57
        hi0 = (p0 >> 32).to(tl.uint32)
        lo0 = p0.to(tl.uint32)
        hi1 = (p1 >> 32).to(tl.uint32)
        lo1 = p1.to(tl.uint32)
        c0 = hi1 ^ c1 ^ k0
        c1 = lo1
        c2 = hi0 ^ c3 ^ k1
        c3 = lo0
        k0 = k0 + 0x9E3779B9
        k1 = k1 + 0xBB67AE85
    return c0, c1, c2, c3


@triton.jit
def rng_key(seed_lo, seed_hi, rng_offset, RNG_PTR: tl.constexpr):
    """The Philox key of a dropout launch as the kernel keeps it: the integer arguments as given, or -- seed_lo a
    pointer to the three int32 words every public dropout call draws (``philox_torch.draw_rng_words``) -- with
    RNG_PTR the words loaded here, at the kernel's start; without it the pointer passes on and ``key_words`` loads
    them where each mask is made (``philox_torch.dropout_args``)."""
    if RNG_PTR:
        rng_offset = tl.load(seed_lo + 2)
        seed_hi = tl.load(seed_lo + 1)
        seed_lo = tl.load(seed_lo)
    return seed_lo, seed_hi, rng_offset


@triton.jit
def key_words(seed_lo, seed_hi, offset):
    """(k0, k1) uint32 and the offset of the Philox key: from the integer arguments, or loaded from the three words
    a pointer in the seed slot points at (philox_torch.dropout_args with at_use), where the mask is made."""
    if seed_lo.dtype.is_ptr():
        k0 = tl.load(seed_lo).to(tl.uint32, bitcast=True)
        k1 = tl.load(seed_lo + 1).to(tl.uint32, bitcast=True)
        offset = tl.load(seed_lo + 2)
    else:
        k0 = seed_lo.to(tl.uint32, bitcast=True)
        k1 = seed_hi.to(tl.uint32, bitcast=True)
    return k0, k1, offset


@triton.jit
def dropout_keep(seed_lo, seed_hi, offset, bh, row_base, rows, col_base, cols, threshold):
    """Keep-mask of the elements (row_base + rows, col_base + cols), shape broadcast(rows, cols).

    row_base, col_base: scalars, multiples of 16 (tile origins); rows, cols: broadcastable int32
    tensors of offsets inside the tile (e.g. tl.arange(0, BLOCK_M)[:, None], tl.arange(0, BLOCK_N)[None, :],
    or transposed for a key-major tile). Every element computes its own Philox counter and picks its own
    16 bits, with no join / reshape / layout conversion: the tile stays in the layout of the scores. The
    8 elements of one group (rows r, r + 8 × columns c, c + 1, c + 8, c + 9) compute the same counter
    from the same in-tile bits, and in the tensor-core accumulator layout one thread holds all 8 of
    them (forward, dQ) or 4 of them (dK/dV's transposed tile), so the compiler evaluates the Philox
    once per group per thread (common subexpressions); splitting the base from the offsets keeps the
    bits the group shares visible to it."""
    k0, k1, offset = key_words(seed_lo, seed_hi, offset)
    # row key: row with bit 3 removed; column key: column with bits 0 and 3 removed
    rkey = (((rows >> 4) << 3) | (rows & 7)).to(tl.uint32) + (row_base >> 1)
    ckey = (((cols >> 4) << 2) | ((cols >> 1) & 3)).to(tl.uint32) + (col_base >> 2)
    c1 = rkey + tl.zeros_like(ckey)
    c3 = ckey + tl.zeros_like(rkey)
    c0 = tl.zeros_like(c1) + bh.to(tl.uint32)
    c2 = tl.zeros_like(c1) + offset.to(tl.uint32, bitcast=True)
    r0, r1, r2, r3 = philox_4x32(c0, c1, c2, c3, k0, k1, 7)
    # element index e = 4·(row bit 3) + 2·(column bit 3) + (column bit 0): 16-bit value e of the
    # 128 output bits (word e >> 1, low half first)
    wsel = ((cols >> 3) & 1) + tl.zeros_like(rows)
    w01 = tl.where(wsel != 0, r1, r0)
    w23 = tl.where(wsel != 0, r3, r2)
    w = tl.where(((rows >> 3) & 1) != 0, w23, w01)
    # high half: w >= thr << 16; low half: (w << 16) >= thr << 16 (no extraction needed)
    u = tl.where((cols & 1) != 0, w, w << 16)
    return u >= (threshold.to(tl.uint32) << 16)


# ---------------------------------------------------------------------------------------------------
# Gluon (the Hopper forward, tilefold/ops/attention/forward_sm90.py): the same generator, the same counters
# and the same 16-bit pick, so its mask equals the Triton kernels' and the torch mirror's element for element

try:
    from triton.experimental import gluon as _gluon
    from triton.experimental.gluon import language as _gl
    _HAVE_GLUON = True
except Exception:  # noqa: BLE001 - no Gluon: the Triton kernels carry dropout
    _HAVE_GLUON = False

if _HAVE_GLUON:

    # the rounds are written once: philox_4x32's body uses only names Gluon shares with triton.language
    # (static_range, uint32 / uint64 casts, integer ops), so Gluon compiles the same function
    philox_4x32_gl = _gluon.jit(philox_4x32.fn)

    # rng_key's and key_words' bodies are written with names Gluon shares too (scalar loads, casts, constexpr branches)
    rng_key_gl = _gluon.jit(rng_key.fn)
    key_words_gl = _gluon.jit(key_words.fn)

    @_gluon.jit
    def dropout_keep_gl(seed_lo, seed_hi, offset, bh, rows, col_base, cols, threshold):
        """dropout_keep for a Gluon score tile: rows (absolute query rows) [R, 1] and cols (in-tile key
        offsets) [1, C] in slices of the tile's layout, col_base a multiple of 16."""
        k0, k1, offset = key_words_gl(seed_lo, seed_hi, offset)
        rkey = (((rows >> 4) << 3) | (rows & 7)).to(_gl.uint32)
        ckey = (((cols >> 4) << 2) | ((cols >> 1) & 3)).to(_gl.uint32) + (col_base >> 2)
        zero = (rkey * 0) + (ckey * 0)
        c1 = rkey + zero
        c3 = ckey + zero
        c0 = zero + bh.to(_gl.uint32)
        c2 = zero + offset.to(_gl.uint32, bitcast=True)
        r0, r1, r2, r3 = philox_4x32_gl(c0, c1, c2, c3, k0, k1, 7)
        csel = (cols >> 3) & 1
        rsel = (rows >> 3) & 1
        w01 = _gl.where((csel + rsel * 0) != 0, r1, r0)
        w23 = _gl.where((csel + rsel * 0) != 0, r3, r2)
        w = _gl.where((rsel + csel * 0) != 0, w23, w01)
        u = _gl.where(((cols & 1) + rows * 0) != 0, w, w << 16)
        return u >= (threshold.to(_gl.uint32) << 16)
