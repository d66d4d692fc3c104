"""The decode kernel's splits share out the keys a row block can see (window / causal applied first, then the split,
with each sequence's own seqlen_k), not the range [0, max_seqlen_k): a 4k-key window at the end of a 32k cache split
16 ways keeps 16 programs busy instead of one or two, and a short sequence of a varlen batch is split as finely as
the longest. Checked on the partial states the split kernel writes (every split of a live row holds keys: finite
lse), on the result (2x rule against fp64), and on the split choice (it counts the visible keys)."""
import pytest
import torch

from decode_helpers import assert_2x, window_ref
from tilefold.ops.attention.naive import varlen_attention_ref
from tilefold.ops.common.dispatch import use_backend
from tilefold.ops.decode import kernel as K
from tilefold.ops.decode import splitkv as SK
from tilefold.ops.decode import split_kv_attention


@pytest.fixture
def partial_lse(monkeypatch):
    """The partial lse (S, *lse_shape) of every split-kernel launch, copied after the launch (two-launch combine, so
    the split kernel does not fold them itself)."""
    seen = []
    launch = K._DECODE.launch

    def spy(key, grid, args, cons, **opts):
        launch(key, grid, args, cons, **opts)
        if grid[2] > 1:
            if args[4].is_cuda:
                torch.cuda.synchronize()
            seen.append((grid[2], args[4].clone()))

    monkeypatch.setattr(K._DECODE, "launch", spy)
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", "kernel")
    K.clear_plans()
    yield seen
    K.clear_plans()


def _every_split_holds_keys(seen, lse):
    """One split launch of S > 1 programs per row block (S as launched: the plan may lower the requested count to
    what the visible keys fill), and every split's partial lse finite."""
    assert len(seen) == 1 and seen[0][0] > 1, [s for s, _ in seen]
    S = seen[0][0]
    parts = seen[0][1][: S * lse.numel()].view(S, -1)
    assert torch.isfinite(parts).all(), torch.isfinite(parts).sum(1).tolist()
    return S


CASES = [  # (B, M, N, H, HK, D, window (left, right), S)
    (1, 1, 2048, 4, 1, 32, (200, 0), 4),     # MQA decode: 201 visible keys of 2048, four splits
    (2, 1, 1500, 8, 2, 16, (300, -1), 5),    # GQA, left window only
    (1, 3, 999, 4, 2, 16, (300, 0), 3),      # 3 query rows: the union of their windows
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"b{c[0]}-q{c[1]}-k{c[2]}-win{c[6][0]}_{c[6][1]}-s{c[7]}")
def test_window_splits_share_the_visible_keys(case, dtype, partial_lse):
    B, M, N, H, HK, D, (left, right), S = case
    torch.manual_seed(N + S)
    q, k, v = torch.randn(B, M, H, D, dtype=dtype), torch.randn(B, N, HK, D, dtype=dtype), torch.randn(B, N, HK, D, dtype=dtype)
    with use_backend("triton"):
        o, l = split_kv_attention(q, k, v, num_splits=S, softmax_scale=D ** -0.5, window=(left, right), softcap=0.0)
    assert _every_split_holds_keys(partial_lse, l) == S
    (ref_o, ref_l), (base_o, base_l) = window_ref(q, k, v, (left, right), 0.0, dtype)
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", l, ref_l, base_l)


def test_varlen_short_sequence_split_as_finely(partial_lse):
    """Sequences of 100 and 1100 keys, 4 splits: the 100-key sequence gets four shares of its own keys (with the splits
    sized by max_seqlen_k it had one non-empty split of four)."""
    torch.manual_seed(5)
    H, HK, D, S = 4, 2, 16, 4
    cu_q = torch.tensor([0, 1, 2], dtype=torch.int32)
    cu_k = torch.tensor([0, 100, 1200], dtype=torch.int32)
    q, k, v = torch.randn(2, H, D), torch.randn(1200, HK, D), torch.randn(1200, HK, D)
    with use_backend("triton"):
        o, l = split_kv_attention(q, k, v, num_splits=S, softmax_scale=D ** -0.5, window=(-1, -1), softcap=0.0,
                                  cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=1, max_seqlen_k=1100)
    assert _every_split_holds_keys(partial_lse, l) == S
    ref_o, ref_l = varlen_attention_ref(q, k, v, cu_q, cu_k)
    base_o, base_l = varlen_attention_ref(q, k, v, cu_q, cu_k, compute_dtype=torch.float32)
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", l, ref_l, base_l)


@pytest.mark.parametrize("win", [(100, 0), (60, -1)])
def test_prefill_split_shares_each_query_block_window(win):
    """The attention forward's split path (query blocks past DECODE_MAX_ROWS packed rows) shares out each query
    block's visible keys the same way: every split of every row holds keys, and the merged states match fp64."""
    from tilefold.ops.attention.forward import attention_fwd
    from tilefold.ops.merge.kernel import merge_fwd
    torch.manual_seed(3)
    B, M, N, H, D, S = 1, 40, 1000, 2, 16, 3
    q, k, v = torch.randn(B, M, H, D), torch.randn(B, N, H, D), torch.randn(B, N, H, D)
    with use_backend("triton"):
        o_parts, l_parts = attention_fwd(q, k, v, softmax_scale=D ** -0.5, window=win, softcap=0.0, num_splits=S)
        o, l = merge_fwd(o_parts, l_parts, out_dtype=q.dtype)
    assert l_parts.shape == (S, B, H, M)
    assert torch.isfinite(l_parts).all(), torch.isfinite(l_parts).view(S, -1).sum(1).tolist()
    (ref_o, ref_l), (base_o, base_l) = window_ref(q, k, v, win, 0.0, torch.float32)
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", l, ref_l, base_l)


def test_split_choice_counts_the_visible_keys(monkeypatch):
    """num_splits=0 asks the split model for the keys the rows can see: seqlen_q + left for a left window (decode
    and prefill-sized shapes), seqlen_k otherwise."""
    asked = []

    def choose(B, H, HK, M, N, *rest):
        asked.append(N)
        return 1

    monkeypatch.setattr(SK, "_choose_cached", choose)
    D = 16
    for M, H, HK, win, expect in [(1, 4, 1, (4096, 0), 4097), (3, 4, 2, (100, -1), 103), (1, 4, 1, (-1, 0), 8192),
                                  (1, 4, 1, (9000, 0), 8192), (300, 2, 1, (100, 0), 400)]:
        q, k = torch.randn(1, M, H, D), torch.randn(1, 8192, HK, D)
        split_kv_attention(q, k, k, num_splits=0, softmax_scale=D ** -0.5, window=win, softcap=0.0)
        assert asked[-1] == expect, (M, H, HK, win, asked[-1])
    assert K.visible_keys(1, 100, -1) == 100 and K.visible_keys(4, 100, 10) == 14 and K.visible_keys(4, 10, 10) == 10


def test_public_split_choice_takes_the_window(monkeypatch):
    """choose_num_splits(..., window=) asks the model what num_splits=0 asks it (visible keys, masked), so it gives
    the count a windowed call uses."""
    calls = []

    def choose(*args):
        calls.append(args)
        return 1

    monkeypatch.setattr(SK, "_choose_cached", choose)
    D, M, H, HK, N = 16, 3, 4, 2, 8192
    q, k = torch.randn(1, M, H, D), torch.randn(1, N, HK, D)
    for win in [(4096, 0), (100, -1), (-1, 0), (-1, -1)]:
        split_kv_attention(q, k, k, num_splits=0, softmax_scale=D ** -0.5, window=win, softcap=0.0)
        SK.choose_num_splits(1, H, M, N, D, q.dtype, "cpu", heads_k=HK, window=win)
        assert calls[-1] == calls[-2], (win, calls[-2:])
    assert calls[0][4] == M + 4096 and calls[0][8] and not calls[-1][8]
    for bad in [(-2, 0), (5,), "causal"]:
        with pytest.raises(ValueError, match="window"):
            SK.choose_num_splits(1, H, M, N, D, q.dtype, "cpu", heads_k=HK, window=bad)


@pytest.mark.gpu
@pytest.mark.parametrize("left,S,launched", [(4096, 16, 13), (1000, 16, 16), (4096, 0, 8)])
def test_window_splits_gpu(left, S, launched, partial_lse):
    """B=1 decode, GQA 32 / 8, hd128 bf16, a 32k cache with a left window: every launched split holds keys; the plan
    lowers a requested 16 to what the window fills with 64-key tiles (4160 keys from the aligned start: 13 shares of
    320), num_splits=0 counts 4097 visible keys (8 splits). Result within the 2x rule."""
    torch.manual_seed(left + S)
    B, M, N, H, HK, D = 1, 1, 32768, 32, 8, 128
    q = torch.randn(B, M, H, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    o, l = split_kv_attention(q, k, v, num_splits=S, softmax_scale=D ** -0.5, window=(left, 0), softcap=0.0)
    assert _every_split_holds_keys(partial_lse, l) == launched
    (ref_o, ref_l), (base_o, base_l) = window_ref(q, k, v, (left, 0), 0.0, torch.bfloat16)
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", l, ref_l, base_l)
