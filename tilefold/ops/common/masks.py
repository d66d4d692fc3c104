"""Mask geometry shared by the attention kernels (forward, backward, split-KV, decode).

Query row r (0-based within its sequence) may see key j iff, with ``shift = seqlen_k - seqlen_q``
(bottom-right alignment, plus any global offset of a partial range)::

    j - r >= shift - win_left     (HAS_LO)
    j - r <= shift + win_right    (HAS_HI; causal is win_right = 0)
    0 <= j < seqlen_k

Loops are split into tiles that need this mask and tiles that are fully visible, so the hot loop
carries no mask arithmetic.
"""
import triton
import triton.language as tl


@triton.jit
def sequence_bounds(cu_seqlens_q, cu_seqlens_k, b, seqlen_q_fixed, seqlen_k_fixed, IS_VARLEN: tl.constexpr):
    """(q_start, seqlen_q, k_start, seqlen_k) of sequence (batch entry) b: from cu_seqlens when packed,
    else (0, M, 0, N)."""
    if IS_VARLEN:
        q_start = tl.load(cu_seqlens_q + b)
        seqlen_q = tl.load(cu_seqlens_q + b + 1) - q_start
        k_start = tl.load(cu_seqlens_k + b)
        seqlen_k = tl.load(cu_seqlens_k + b + 1) - k_start
    else:
        q_start = 0
        seqlen_q = seqlen_q_fixed
        k_start = 0
        seqlen_k = seqlen_k_fixed
    return q_start, seqlen_q, k_start, seqlen_k


@triton.jit
def used_keys(seqlen_k, seqused_k, b, HAS_SEQUSED: tl.constexpr):
    """The keys of sequence b the call attends to: seqlen_k, or with HAS_SEQUSED the first ``seqused_k[b]`` of them
    (a padded KV cache's filled length), clamped into [0, seqlen_k] so a bad value cannot read past the keys."""
    if HAS_SEQUSED:
        seqlen_k = tl.minimum(tl.maximum(tl.load(seqused_k + b), 0), seqlen_k)
    return seqlen_k


@triton.jit
def left_pad(k_start, seqlen_k, cache_leftpad, b, HAS_LEFTPAD: tl.constexpr):
    """A left-padded cache: sequence b's keys start ``cache_leftpad[b]`` rows in (clamped into [0, seqlen_k]), so its
    keys are rows [k_start + pad, k_start + seqlen_k) and it has seqlen_k - pad of them (the masks align to that)."""
    if HAS_LEFTPAD:
        pad = tl.minimum(tl.maximum(tl.load(cache_leftpad + b), 0), seqlen_k)
        k_start = k_start + pad
        seqlen_k = seqlen_k - pad
    return k_start, seqlen_k


@triton.jit
def cache_row(b, cache_batch_idx, n_cache, HAS_CACHE_IDX: tl.constexpr):
    """The batch row of K / V that sequence b reads: b, or with HAS_CACHE_IDX ``cache_batch_idx[b]`` (a cache slot),
    clamped into [0, n_cache) so a bad index cannot read outside K / V."""
    if HAS_CACHE_IDX:
        b = tl.minimum(tl.maximum(tl.load(cache_batch_idx + b), 0), n_cache - 1)
    return b


@triton.jit
def paged_rows(bt_row, offs_n, seqlen_k, page_size, n_pages):
    """Where keys offs_n of one sequence live in a paged cache (block table row ``bt_row``): their page
    ``bt_row[n // page_size]``, clamped into [0, n_pages) so a bad table entry cannot read outside K / V, and their
    row in it, ``n % page_size``; both int64. Keys at or past seqlen_k read no table entry (page 0)."""
    pg = tl.load(bt_row + offs_n // page_size, mask=offs_n < seqlen_k, other=0)
    pg = tl.minimum(tl.maximum(pg, 0), n_pages - 1)
    return pg.to(tl.int64), (offs_n % page_size).to(tl.int64)


@triton.jit
def visible(offs_m, offs_n, seqlen_k, shift, win_left, win_right,
            HAS_LO: tl.constexpr, HAS_HI: tl.constexpr):
    """Boolean [BM, BN] tile: may row offs_m see key offs_n."""
    ok = offs_n[None, :] < seqlen_k
    diff = offs_n[None, :] - offs_m[:, None]
    if HAS_HI:
        ok = ok & (diff <= shift + win_right)
    if HAS_LO:
        ok = ok & (diff >= shift - win_left)
    return ok


@triton.jit
def alibi_distance(offs_m, offs_n, shift):
    """fp32 [BM, BN] tile of |i + shift - j|: the distance ALiBi's slope multiplies (aligned to the bottom-right
    corner, as the masks; flash_attn's convention)."""
    # the two index vectors converted before the broadcast (a conversion per row and per column, not per element);
    # integers below 2^24 are exact in fp32 and so is their difference: per element one subtraction, whose absolute
    # value the caller's multiply-add takes as an operand modifier
    return tl.abs((offs_m + shift).to(tl.float32)[:, None] - offs_n.to(tl.float32)[None, :])


@triton.jit
def key_tiles(m0, seqlen_q, seqlen_k, shift, win_left, win_right, split_lo, split_hi,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              HAS_LO: tl.constexpr, HAS_HI: tl.constexpr):
    """Key tiles for query rows [m0, m0 + BLOCK_M), within keys [split_lo, split_hi) (split_lo a
    multiple of BLOCK_N). Returns (n_start, f_lo, f_hi, n_end): masked tiles [n_start, f_lo), fully
    visible tiles [f_lo, f_hi), masked tiles [f_hi, n_end); all tile starts are BLOCK_N-aligned."""
    r_last = tl.minimum(m0 + BLOCK_M, seqlen_q) - 1
    lo = split_lo
    hi = tl.minimum(seqlen_k, split_hi)
    if HAS_LO:
        lo = tl.maximum(lo, m0 + shift - win_left)
    if HAS_HI:
        hi = tl.minimum(hi, r_last + shift + win_right + 1)
    n_start = (lo // BLOCK_N) * BLOCK_N
    n_start = tl.maximum(n_start, split_lo)
    hi = tl.maximum(hi, n_start)
    n_end_al = n_start + tl.cdiv(hi - n_start, BLOCK_N) * BLOCK_N
    # fully visible tiles: n >= r_last + shift - win_left ; n + BLOCK_N <= min(m0 + shift + win_right + 1, hi)
    full_hi_edge = hi
    if HAS_HI:
        full_hi_edge = tl.minimum(full_hi_edge, m0 + shift + win_right + 1)
    f_hi = n_start + tl.maximum(full_hi_edge - n_start, 0) // BLOCK_N * BLOCK_N
    f_lo = n_start
    if HAS_LO:
        need = r_last + shift - win_left
        f_lo = n_start + tl.cdiv(tl.maximum(need - n_start, 0), BLOCK_N) * BLOCK_N
    f_lo = tl.minimum(f_lo, n_end_al)
    f_hi = tl.maximum(f_hi, f_lo)
    return n_start, f_lo, f_hi, hi


@triton.jit
def split_share(m0, seqlen_q, seqlen_k, shift, win_left, win_right, pid_s, n_splits,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_LO: tl.constexpr, HAS_HI: tl.constexpr):
    """Split-KV: the keys [split_lo, split_hi) of split pid_s of n_splits for query rows [m0, seqlen_q): the pid_s-th
    of n_splits equal BLOCK_N-aligned shares of the keys those rows can see (window / causal first, then the split),
    so a window at the end of a long sequence is split rather than [0, seqlen_k). Shares past the end are empty."""
    vis_lo, _, _, vis_hi = key_tiles(m0, seqlen_q, seqlen_k, shift, win_left, win_right, 0, seqlen_k,
                                     BLOCK_M, BLOCK_N, HAS_LO, HAS_HI)
    share = tl.cdiv(tl.cdiv(vis_hi - vis_lo, n_splits), BLOCK_N) * BLOCK_N
    split_lo = vis_lo + pid_s * share
    return split_lo, split_lo + share


@triton.jit
def query_tiles(n0, seqlen_q, seqlen_k, shift, win_left, win_right,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                HAS_LO: tl.constexpr, HAS_HI: tl.constexpr):
    """Query tiles that see keys [n0, n0 + BLOCK_N). Returns (m_start, f_lo, f_hi, m_end): masked
    tiles [m_start, f_lo), fully visible tiles [f_lo, f_hi), masked [f_hi, m_end); starts aligned to
    BLOCK_M. Tiles are fully visible only if the key block is complete and rows are in range."""
    n_last = tl.minimum(n0 + BLOCK_N, seqlen_k) - 1
    lo = 0
    hi = seqlen_q
    if HAS_HI:
        lo = tl.maximum(lo, n0 - shift - win_right)
    if HAS_LO:
        hi = tl.minimum(hi, n_last - shift + win_left + 1)
    m_start = (lo // BLOCK_M) * BLOCK_M
    hi = tl.maximum(hi, m_start)
    m_end_al = m_start + tl.cdiv(hi - m_start, BLOCK_M) * BLOCK_M
    full_hi_edge = hi
    if HAS_LO:
        full_hi_edge = tl.minimum(full_hi_edge, n0 - shift + win_left + 1)
    f_hi = m_start + tl.maximum(full_hi_edge - m_start, 0) // BLOCK_M * BLOCK_M
    f_lo = m_start
    if HAS_HI:
        need = n_last - shift - win_right
        f_lo = m_start + tl.cdiv(tl.maximum(need - m_start, 0), BLOCK_M) * BLOCK_M
    # a partial key block needs the mask on every tile
    f_lo = tl.where(n0 + BLOCK_N <= seqlen_k, f_lo, m_end_al)
    f_lo = tl.minimum(f_lo, m_end_al)
    f_hi = tl.maximum(f_hi, f_lo)
    return m_start, f_lo, f_hi, hi


@triton.jit
def grid_row(N_SPLITS):
    """(row, split) of this program on a grid (blocks, Y, Z · N_SPLITS): the batch x heads rows lie on axes 1 and 2
    (row = program_id(1) + z · Y, ``host.rows_grid``; Z = 1 up to 65535 rows) and axis 2 also carries the N_SPLITS
    splits of a split-KV launch (program_id(2) = z · N_SPLITS + split)."""
    pid2 = tl.program_id(2)
    return tl.program_id(1) + (pid2 // N_SPLITS) * tl.num_programs(1), pid2 % N_SPLITS


@triton.jit
def block_order(LPT: tl.constexpr, HEAVY_LAST: tl.constexpr, N_SPLITS):
    """(block, batch*head, split) of this program on a grid (blocks, Y, Z · N_SPLITS) (``grid_row``), heaviest blocks
    first: under a causal mask the last query block (HEAVY_LAST) or the first key block sees the most. Default: head
    by head (a head's programs run side by side and share its tiles in L2); LPT: every head's heaviest block, then
    every head's next, ... over each Y rows of the grid (measured slower on an H200: config.ORDER)."""
    row, split = grid_row(N_SPLITS)
    if LPT:
        lin = tl.program_id(0) + tl.program_id(1) * tl.num_programs(0)
        blk = lin // tl.num_programs(1)
        row = row - tl.program_id(1) + lin % tl.num_programs(1)
    else:
        blk = tl.program_id(0)
    if HEAVY_LAST:
        blk = tl.num_programs(0) - 1 - blk
    return blk, row, split
