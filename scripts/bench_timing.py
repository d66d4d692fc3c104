"""Timing helpers shared by the device scripts (launch_micro, host_profile_bwd, engine_diag, decode_fold_bench)."""
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def host_us(fn, n=200, warm=20, digits=1):
    """Host µs per call: a loop of n calls without a sync inside (the clock stops before the final sync)."""
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return round((t1 - t0) / n * 1e6, digits)


def loop_us(fn, n=200):
    """µs per call of n back-to-back calls including the final sync: the larger of host and GPU time per call."""
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def graph_us(fn, n=200):
    """GPU µs per call: fn captured once in a CUDA graph (after a warm-up on a side stream), replayed n times."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    us = loop_us(g.replay, n)
    del g
    return round(us, 2)


def cudnn_gqa(q, k, v):
    """SDPA pinned to cuDNN on (batch, seqlen, heads, head_dim) tensors with GQA."""
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                              enable_gqa=True).transpose(1, 2)
