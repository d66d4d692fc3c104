"""Tensor descriptors (TMA on Hopper): when they may be used, Triton's scratch allocator, and the
one device-side descriptor shape the attention kernels use (rows of a (seq, head_dim) slab)."""
import functools

import torch
import triton
import triton.language as tl


@triton.jit
def rows_descriptor(base, rows, D, stride_row, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """Descriptor over a (rows, D) slab with row stride ``stride_row``; loads of [BLOCK_R, BLOCK_D]
    boxes zero-fill rows >= rows and columns >= D."""
    return tl.make_tensor_descriptor(base, shape=[rows, D], strides=[stride_row, 1],
                                     block_shape=[BLOCK_R, BLOCK_D])


@triton.jit
def load_kv_tile(k_ptrs, v_ptrs, k_desc, v_desc, start_n, offs_n, offs_d, seqlen_k, D,
                 MASKED: tl.constexpr, EVEN_D: tl.constexpr, USE_TMA: tl.constexpr):
    """One [BLOCK_N, BLOCK_D] tile of K and of V at key start_n: through the descriptors (whose bounds
    zero-fill rows >= seqlen_k and columns >= D), or pointer loads masked only where needed (MASKED:
    the tile may run past seqlen_k; not EVEN_D: the head dim is padded)."""
    if USE_TMA:
        k = k_desc.load([start_n, 0])
        v = v_desc.load([start_n, 0])
    elif MASKED:
        kv_mask = offs_n[:, None] < seqlen_k
        if not EVEN_D:
            kv_mask = kv_mask & (offs_d[None, :] < D)
        k = tl.load(k_ptrs, mask=kv_mask, other=0.0)
        v = tl.load(v_ptrs, mask=kv_mask, other=0.0)
    elif EVEN_D:
        k = tl.load(k_ptrs)
        v = tl.load(v_ptrs)
    else:
        k = tl.load(k_ptrs, mask=offs_d[None, :] < D, other=0.0)
        v = tl.load(v_ptrs, mask=offs_d[None, :] < D, other=0.0)
    return k, v


def _scratch(size, align, stream):
    return torch.empty(size, dtype=torch.int8, device="cuda")


def ensure_allocator():
    """Device-side tensor descriptors need Triton's scratch allocator. It is a context variable, so it
    is set on every launch: autograd runs the backward on another thread than the forward."""
    triton.set_allocator(_scratch)


@functools.lru_cache(maxsize=None)
def _major(index):
    return torch.cuda.get_device_capability(index)[0]


def tma_ok(k, v):
    """Tensor descriptors need 16-byte aligned bases and row strides, a CUDA tensor on sm_90+, and here a
    power-of-two head dim: a 128-wide box over a head dim of 72 crashed with an illegal instruction
    (GPU tier, bf16, seqlen 1), so padded head dims take the pointer loads."""
    if k.device.type != "cuda" or _major(k.device.index if k.device.index is not None
                                         else torch.cuda.current_device()) < 9:
        return False
    D = k.shape[-1]
    if D < 16 or D & (D - 1):
        return False
    es = k.element_size()
    for t in (k, v):
        if t.data_ptr() % 16 or (t.stride(-3) * es) % 16 or (t.shape[-1] * es) % 16:
            return False
        if t.dim() == 4 and (t.stride(0) * es) % 16:
            return False
        if (t.stride(-2) * es) % 16:
            return False
    return True




def paged_tma_ok(k, v, block_n):
    """Whether the forward kernel may read a paged pool (n_pages, page_size, HK, D) through descriptors over its rows
    (tma_ok besides): every key tile lies in one page (page_size % block_n == 0), a pool's pages are consecutive rows
    (page stride = page_size · row stride), and the rows are counted in int32 (TMA coordinates)."""
    n_pages, page = k.shape[0], k.shape[1]
    if page % block_n or n_pages * page >= 2 ** 31:
        return False
    return all(t.stride(0) == page * t.stride(1) for t in (k, v))
