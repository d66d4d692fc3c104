"""Split-KV attention (num_splits 1, 2, 3, 7, 0 == no split), varlen with empty sequences, gradients,
and partial attention in global positions. Both backends on the CPU tier; bf16 decode shapes on GPU."""
import random

import pytest
import torch
from hypothesis import given, settings, strategies as st

from decode_helpers import assert_2x, check_decode_gpu, random_partition, tree_merge
from tilefold.ops.attention.naive import attention_ref, varlen_attention_ref
from tilefold.ops.common.dispatch import use_backend
from tilefold.ops.decode import choose_num_splits, partial_attention, split_kv_attention
from tilefold.ops.decode import kernel as decode_kernel
from tilefold.ops.decode.splitkv import decode_splits
from tilefold.ops.merge import merge_state, merge_states

BACKENDS = ["torch", "triton"]
SPLITS = [1, 2, 3, 7, 0]


def _window(causal, window):
    left, right = window
    if causal:
        right = 0 if right < 0 else min(right, 0)
    return left, right


CASES = [  # (B, M, N, H, HK, D, causal, window)
    (2, 1, 113, 4, 2, 32, False, (-1, -1)),   # decode, GQA
    (1, 17, 113, 2, 1, 40, True, (-1, -1)),   # MQA, odd head dim, causal
    (1, 5, 70, 2, 2, 16, True, (8, -1)),      # causal + left window
    (1, 33, 20, 2, 2, 16, True, (-1, -1)),    # seqlen_q > seqlen_k: empty rows
    (1, 3, 1, 2, 2, 16, False, (-1, -1)),     # one key
    (2, 1, 50, 8, 2, 16, True, (-1, -1)),     # decode, GQA packed (causal)
    (1, 1, 50, 4, 1, 16, False, (-1, 3)),     # decode, MQA packed, right window
    (1, 1, 50, 4, 2, 16, False, (6, -1)),     # decode, GQA packed, left window
    (2, 5, 70, 8, 2, 16, True, (-1, -1)),     # seqlen_q > 1 packed: 5 x 4 rows, causal by position
    (1, 9, 40, 6, 2, 24, True, (5, -1)),      # G = 3, odd head dim, causal + left window
    (1, 33, 20, 4, 2, 16, True, (-1, -1)),    # packed rows 66 > one block; empty rows
    (1, 130, 70, 2, 1, 16, True, (-1, -1)),   # 260 packed rows > DECODE_MAX_ROWS: prefill split path
]


def _cid(c):
    B, M, N, H, HK, D, causal, w = c
    return f"b{B}-q{M}-k{N}-h{H}x{HK}-d{D}" + ("-causal" if causal else "") + ("-win{}_{}".format(*w) if w != (-1, -1) else "")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=_cid)
def test_num_splits_equal_no_split(backend, case):
    B, M, N, H, HK, D, causal, win = case
    torch.manual_seed(hash(case) % 1000)
    q, k, v = torch.randn(B, M, H, D), torch.randn(B, N, HK, D), torch.randn(B, N, HK, D)
    ref_o, ref_l = attention_ref(q, k, v, causal=causal, window_size=win)
    base_o, base_l = attention_ref(q, k, v, causal=causal, window_size=win, compute_dtype=torch.float32)
    with use_backend(backend):
        results = {S: split_kv_attention(q, k, v, num_splits=S, softmax_scale=D ** -0.5,
                                         window=_window(causal, win), softcap=0.0) for S in SPLITS}
    for S, (o, l) in results.items():
        assert o.shape == q.shape and o.dtype == q.dtype and l.shape == (B, H, M)
        assert_2x(f"out S={S}", o, ref_o, base_o)
        assert_2x(f"lse S={S}", l, ref_l, base_l)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("S", [2, 3, 0])
def test_varlen_with_empty_sequences(backend, S):
    torch.manual_seed(S)
    lq, lk = [1, 0, 3, 2, 4], [50, 7, 0, 60, 9]  # empty q, empty k, seqlen_q < seqlen_k and >
    cu_q = torch.tensor([0] + list(torch.tensor(lq).cumsum(0)), dtype=torch.int32)
    cu_k = torch.tensor([0] + list(torch.tensor(lk).cumsum(0)), dtype=torch.int32)
    H, HK, D = 4, 2, 16
    q, k, v = torch.randn(sum(lq), H, D), torch.randn(sum(lk), HK, D), torch.randn(sum(lk), HK, D)
    ref_o, ref_l = varlen_attention_ref(q, k, v, cu_q, cu_k, causal=True)
    base_o, base_l = varlen_attention_ref(q, k, v, cu_q, cu_k, causal=True, compute_dtype=torch.float32)
    with use_backend(backend):
        o, l = split_kv_attention(q, k, v, num_splits=S, softmax_scale=D ** -0.5, window=(-1, 0), softcap=0.0,
                                  cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=max(lq), max_seqlen_k=max(lk))
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", l, ref_l, base_l)


@pytest.mark.parametrize("backend", BACKENDS)
def test_split_kv_gradients(backend):
    torch.manual_seed(3)
    B, M, N, H, HK, D = 1, 4, 45, 4, 2, 16
    q, k, v = torch.randn(B, M, H, D), torch.randn(B, N, HK, D), torch.randn(B, N, HK, D)
    dout, dlse = torch.randn(B, M, H, D), torch.randn(B, H, M)

    def grads(fn, dtype):
        xs = [t.to(dtype).requires_grad_() for t in (q, k, v)]
        o, l = fn(*xs)
        return list(torch.autograd.grad((o * dout.to(o.dtype)).sum() + (l * dlse.to(l.dtype)).sum(), xs))

    ref = grads(lambda a, b, c: attention_ref(a, b, c, causal=True), torch.float64)
    base = grads(lambda a, b, c: attention_ref(a, b, c, causal=True, compute_dtype=torch.float32), torch.float32)
    with use_backend(backend):
        got = grads(lambda a, b, c: split_kv_attention(a, b, c, num_splits=3, softmax_scale=D ** -0.5,
                                                       window=(-1, 0), softcap=0.0), torch.float32)
    for name, g, r, bs in zip(("dq", "dk", "dv"), got, ref, base):
        assert_2x(name, g, r, bs)


def test_num_splits_validation_and_cpu_heuristic():
    q, k = torch.randn(1, 1, 2, 16), torch.randn(1, 64, 2, 16)
    for bad in (-1, 1.5, True, 129):
        with pytest.raises(ValueError, match="num_splits"):
            split_kv_attention(q, k, k, num_splits=bad, softmax_scale=0.25, window=(-1, -1), softcap=0.0)
    from tilefold.ops.decode.splitkv import CPU_SPLITS
    # the CPU heuristic: CPU_SPLITS ranges (so num_splits=0 exercises a real split there), fewer with fewer keys
    assert choose_num_splits(1, 2, 1, 64, 16, torch.float32, "cpu") == CPU_SPLITS > 1
    assert choose_num_splits(1, 2, 1, 2, 16, torch.float32, "cpu") == 2
    o128 = split_kv_attention(q, k, k, num_splits=128, softmax_scale=0.25, window=(-1, -1), softcap=0.0)[0]
    o1 = split_kv_attention(q, k, k, num_splits=1, softmax_scale=0.25, window=(-1, -1), softcap=0.0)[0]
    assert (o128 - o1).abs().max() < 1e-5


def test_choose_num_splits_validation():
    for kw, name in [(dict(batch=-1), "batch"), (dict(batch=1.5), "batch"), (dict(heads=0), "heads"),
                     (dict(heads_k=3), "heads_k"), (dict(headdim=0), "headdim"), (dict(dtype="bf16"), "dtype"),
                     (dict(seqlen_k=True), "seqlen_k")]:
        args = dict(batch=1, heads=8, seqlen_q=1, seqlen_k=64, headdim=16, dtype=torch.float32, device="cpu")
        args.update(kw)
        with pytest.raises(ValueError, match=name):
            choose_num_splits(**args)


def test_empty_batch_split_choice_on_gpu_policy(gpu_policy):
    """An empty batch (or no query rows) on a CUDA device: 1 split. The prefill-sized rule used to divide by zero
    programs (B = 0 with seqlen_q · G > 256)."""
    SK = gpu_policy
    for B, M in [(0, 300), (0, 1), (0, 16), (2, 0)]:
        assert SK.choose_num_splits(B, 8, M, 1000, 128, torch.bfloat16, "cuda", heads_k=8) == 1
        assert SK._choose_cached(B, 8, 8, M, 1000, 128, torch.bfloat16, torch.device("cuda"), False, True) == 1


@pytest.mark.parametrize("S", [1, 3, 0])
def test_decode_fp16_softcap_every_element_written(S, monkeypatch):
    """fp16 through the decode kernel (interpreter), softcap on, outputs and partial states poisoned
    with NaN before the kernels write them."""
    class Poisoned:
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def empty(*a, **kw):
            size = a[0] if len(a) == 1 else a
            size = (size,) if isinstance(size, int) else size
            return torch.full(size, float("nan"), dtype=kw.get("dtype"), device=kw.get("device"))

    monkeypatch.setattr(decode_kernel, "torch", Poisoned())
    torch.manual_seed(11 + S)
    B, M, N, H, HK, D = 2, 3, 77, 8, 2, 32
    q, k, v = (torch.randn(B, L, h, D).half() for L, h in ((M, H), (N, HK), (N, HK)))
    ref_o, ref_l = attention_ref(q, k, v, causal=True, softcap=5.0)
    base_o, base_l = attention_ref(q, k, v, causal=True, softcap=5.0, compute_dtype=torch.float16)
    with use_backend("triton"):
        o, l = split_kv_attention(q, k, v, num_splits=S, softmax_scale=D ** -0.5, window=(-1, 0), softcap=5.0)
    assert not torch.isnan(o).any() and not torch.isnan(l).any()
    assert o.dtype == torch.float16
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", l, ref_l, base_l)


@pytest.mark.parametrize("B,HK,N,expect", [(1, 8, 8192, 32), (1, 8, 32768, 27), (1, 8, 131072, 27),
                                            (1, 8, 1 << 20, 27), (8, 8, 32768, 4), (32, 8, 8192, 1)])
def test_decode_split_model_h200(B, HK, N, expect):
    """The split choice for the benchmark's decode shapes (bf16, hd128, G=4, seqlen_q=1, 132 SMs, two
    three 16x64-tile programs per SM): no empty ranges, >= 4 key tiles per split, and the counts in the notes."""
    s = decode_splits(B * HK, N, 64, 2 * 128 * 2, B * 32 * 129 * 4, 132, 3)
    size = -(-(-(-N // 64)) // s) * 64
    assert -(-N // size) == s and (s == 1 or size >= 256)
    assert s == expect


def test_decode_split_model_properties():
    for programs in (1, 3, 8, 64, 200, 1000):
        for N in (1, 63, 64, 1000, 4096, 100000):
            s = decode_splits(programs, N, 64, 512, programs * 4 * 129 * 4, 132, 2)
            assert 1 <= s <= max(1, -(-N // 64))
    assert decode_splits(4096, 1 << 16, 64, 512, 0, 132, 2) == 1  # already many waves


# ---------------------------------------------------------------------------------------------------
# partial attention in global positions


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=10, deadline=None, derandomize=True)  # the same examples every run
@given(seed=st.integers(0, 2**31 - 1), M=st.sampled_from([1, 4, 19]), N=st.sampled_from([5, 33]),
       causal=st.booleans(), window=st.sampled_from([(-1, -1), (4, -1), (2, 3)]))
def test_partial_key_and_query_blocks_tile_the_full_attention(backend, seed, M, N, causal, window):
    """Cut queries and keys into random blocks (ring / 2.5D style); every query block's merged key
    blocks equal the full attention rows."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    B, H, HK, D = 1, 2, 1, 16
    q, k, v = torch.randn(B, M, H, D), torch.randn(B, N, HK, D), torch.randn(B, N, HK, D)
    ref_o, ref_l = attention_ref(q, k, v, causal=causal, window_size=window)
    base_o, base_l = attention_ref(q, k, v, causal=causal, window_size=window, compute_dtype=torch.float32)
    qcuts = sorted(set(random_partition(rng, M, 3)))
    kcuts = random_partition(rng, N, 4)
    with use_backend(backend):
        for qa, qb in zip(qcuts[:-1], qcuts[1:]):
            states = [partial_attention(q[:, qa:qb], k[:, a:b], v[:, a:b], q_start=qa, k_start=a,
                                        seqlen_q_total=M, seqlen_k_total=N, causal=causal, window_size=window)
                      for a, b in zip(kcuts[:-1], kcuts[1:])]
            o, l = tree_merge(rng, states, lambda x, y: merge_state(*x, *y))
            assert_2x("out", o, ref_o[:, qa:qb], base_o[:, qa:qb])
            assert_2x("lse", l, ref_l[:, :, qa:qb], base_l[:, :, qa:qb])


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_empty_key_range(backend):
    q = torch.randn(1, 3, 2, 16)
    k = torch.randn(1, 0, 2, 16)
    with use_backend(backend):
        o, l = partial_attention(q, k, k, q_start=0, k_start=5, seqlen_q_total=3, seqlen_k_total=5, causal=True)
    assert (o == 0).all() and torch.isneginf(l).all()


def test_partial_validation():
    q, k = torch.randn(1, 3, 2, 16), torch.randn(1, 4, 2, 16)
    with pytest.raises(ValueError, match="q_start"):
        partial_attention(q, k, k, q_start=2, k_start=0, seqlen_q_total=4, seqlen_k_total=4)
    with pytest.raises(ValueError, match="k_start"):
        partial_attention(q, k, k, q_start=0, k_start=1, seqlen_q_total=4, seqlen_k_total=4)
    with pytest.raises(ValueError, match="k_start"):
        partial_attention(q, k, k, q_start=0, k_start=-1, seqlen_q_total=4, seqlen_k_total=4)
    for D in (0, 300):  # as attention: head dims 1..256
        z = torch.randn(1, 2, 1, D)
        with pytest.raises(ValueError, match="head dim"):
            partial_attention(z, z, z, q_start=0, k_start=0, seqlen_q_total=2, seqlen_k_total=2)
    # global positions are int32 in the kernels and windows clamp to 2^30: totals past 2^30 used to mask wrongly
    q, k = torch.randn(1, 4, 2, 16), torch.randn(1, 6, 2, 16)
    with pytest.raises(ValueError, match="seqlen_k_total"):
        partial_attention(q, k, k, q_start=0, k_start=0, seqlen_q_total=4, seqlen_k_total=2 ** 31 + 5, causal=True)
    with pytest.raises(ValueError, match="seqlen_q_total"):
        partial_attention(q, k, k, q_start=0, k_start=0, seqlen_q_total=2 ** 30 + 1, seqlen_k_total=6)
    o, _ = partial_attention(q, k, k, q_start=0, k_start=2 ** 30 - 6, seqlen_q_total=4, seqlen_k_total=2 ** 30,
                             window_size=(2 ** 40, 2 ** 40))
    ref = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), k.transpose(1, 2))
    assert (o - ref.transpose(1, 2)).abs().max() < 1e-5


# ---------------------------------------------------------------------------------------------------
# GPU tier: decode shapes in bf16


@pytest.mark.gpu
@pytest.mark.parametrize("M", [1, 16, 200])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("S", [1, 3, 16, 0])
def test_decode_gpu(M, causal, S):
    check_decode_gpu(M, causal, S, seed=M)


@pytest.mark.gpu
def test_choose_num_splits_gpu():
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    s = choose_num_splits(1, 32, 1, 1 << 20, 128, torch.bfloat16, "cuda")
    assert s > 1 and 32 * s >= sms
    assert choose_num_splits(64, 32, 4096, 4096, 128, torch.bfloat16, "cuda") == 1
