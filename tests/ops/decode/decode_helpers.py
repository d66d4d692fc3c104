"""The decode tests share the merge tests' checks (2x rule, partitions, random merge trees), plus the references of
split_kv_attention's window convention and the bf16 decode check on the GPU."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "merge"))
from merge_helpers import assert_2x, max_err, random_partition, tree_merge  # noqa: E402,F401


def window_ref(q, k, v, window, softcap, dtype):
    """fp64 reference and the same computation at ``dtype`` for split_kv_attention's ``window = (left, right)``
    (causal folded into right = 0): ((out, lse), (out, lse))."""
    from tilefold.ops.attention.naive import attention_ref
    left, right = window
    causal = right == 0
    win = (left, -1 if causal else right)
    return (attention_ref(q, k, v, causal=causal, window_size=win, softcap=softcap),
            attention_ref(q, k, v, causal=causal, window_size=win, softcap=softcap, compute_dtype=dtype))


def check_decode_gpu(M, causal, S, seed):
    """B=2, 4096 + 17 keys, 32 / 8 heads, hd128 bf16 decode through split_kv_attention on the GPU, against fp64 (2x
    rule)."""
    import torch
    from tilefold.ops.decode import split_kv_attention
    torch.manual_seed(seed)
    B, N, H, HK, D = 2, 4096 + 17, 32, 8, 128
    q = torch.randn(B, M, H, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    window = (-1, 0 if causal else -1)
    (ref_o, ref_l), (base_o, base_l) = window_ref(q, k, v, window, 0.0, torch.bfloat16)
    o, l = split_kv_attention(q, k, v, num_splits=S, softmax_scale=D ** -0.5, window=window, softcap=0.0)
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", l, ref_l, base_l)
