"""Balanced split-KV (``decode_balanced_kernel``): the key tiles of all (batch, key head) pairs laid end to end and cut
into P equal ranges, so P programs finish together whatever B · HK is; a range crossing pairs writes one state per pair,
and the last program of a pair folds its states. CPU tier (interpreter, SM count patched so ranges cross pairs in every
way: a pair over 3+ programs, a program over several whole pairs, one tile per program): against fp64 (2x rule), and
the switch's reach. GPU tier: the candidate tiles at one and two programs per SM, against fp64."""
import pytest
import torch

from decode_helpers import assert_2x, window_ref
from tilefold.ops.decode import kernel as K
from tilefold.ops.decode import split_kv_attention


@pytest.fixture
def balanced_on(monkeypatch):
    monkeypatch.setenv("TILEFOLD_DECODE_BALANCED", "1")
    K.clear_plans()
    yield
    K.clear_plans()


def _run(q, k, v, window, softcap, num_splits=0):
    return split_kv_attention(q, k, v, num_splits=num_splits, softmax_scale=q.shape[-1] ** -0.5, window=window,
                              softcap=softcap)


# B, M, H, HK, N, D, window (left, right), softcap, SMs
CPU_CASES = [
    (2, 1, 8, 2, 100, 32, (-1, -1), 0.0, 3),  # 4 pairs of 7 tiles over 3 programs: programs span pairs
    (3, 2, 4, 1, 77, 16, (-1, 0), 0.0, 5),  # MQA, causal, 3 pairs over 5 programs
    (1, 4, 8, 2, 200, 32, (40, 0), 0.0, 7),  # window: 4 tiles per pair; 16 packed rows (a full block)
    (2, 1, 2, 2, 33, 24, (-1, -1), 5.0, 11),  # padded head dim, softcap; a pair over 4+ programs
    (4, 1, 4, 4, 16, 16, (-1, -1), 0.0, 2),  # one tile per pair, 16 pairs over 2 programs
    (1, 3, 4, 2, 2, 16, (-1, 0), 0.0, 4),  # fewer keys than queries, causal: the first rows see nothing
    (2, 2, 4, 2, 300, 16, (10, 3), 0.0, 40),  # one tile per pair: P = total tiles (4), not 40
]


@pytest.mark.parametrize("B,M,H,HK,N,D,window,softcap,sms", CPU_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("align", [False, True])
def test_balanced_matches_fp64(B, M, H, HK, N, D, window, softcap, sms, dtype, align, balanced_on, monkeypatch):
    """align: the ranges cut (batch, tile) units, the same for every key head (P = HK x SMs // HK)."""
    monkeypatch.setattr(K, "num_sms", lambda dev: sms)
    cfg = K.decode_config(M * H // HK, D, dtype, torch.device("cpu"))
    monkeypatch.setattr(K, "BALANCED_FORCE", (cfg, 1, align))
    torch.manual_seed(B * 100 + N)
    q, k, v = (torch.randn(B, n, h, D, dtype=dtype) for n, h in ((M, H), (N, HK), (N, HK)))
    (ref_o, ref_l), (base_o, base_l) = window_ref(q, k, v, window, softcap, dtype)
    o, lse = _run(q, k, v, window, softcap)
    (plan,) = K._PLANS.values()
    assert plan.balanced and plan.cons["ALIGN_HEADS"] == align
    tiles = plan.a2[-2]
    if align:
        assert plan.grid == (HK * max(1, min(sms // HK, B * tiles)), 1, 1) and plan.a2[-1] == B * tiles
    else:
        assert plan.grid == (min(sms, B * HK * tiles), 1, 1) and plan.a2[-1] == B * HK * tiles
    assert o.dtype == dtype and o.shape == q.shape and lse.shape == (B, H, M)
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", lse, ref_l, base_l)


def test_balanced_grad_and_repeat(balanced_on, monkeypatch):
    """Through autograd (the backward is the attention backward on the merged state) against fp64 autograd of SDPA, and
    twice in a row (bitwise the same)."""
    monkeypatch.setattr(K, "num_sms", lambda dev: 5)
    torch.manual_seed(0)
    q = torch.randn(2, 1, 8, 32, requires_grad=True)
    k = torch.randn(2, 90, 2, 32, requires_grad=True)
    v = torch.randn(2, 90, 2, 32, requires_grad=True)
    o, _ = _run(q, k, v, (-1, -1), 0.0)
    assert next(iter(K._PLANS.values())).balanced
    g = torch.randn_like(o)
    (o * g).sum().backward()
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(
        q64.transpose(1, 2), k64.repeat_interleave(4, 2).transpose(1, 2), v64.repeat_interleave(4, 2).transpose(1, 2),
        scale=32 ** -0.5).transpose(1, 2)
    (ref * g.double()).sum().backward()
    assert (o.double() - ref).abs().max() < 1e-5
    for t, t64 in ((q, q64), (k, k64), (v, v64)):
        assert (t.grad.double() - t64.grad).abs().max() < 1e-4
    with torch.no_grad():
        o2, _ = _run(q, k, v, (-1, -1), 0.0)
    assert torch.equal(o2, o.detach())


def test_balanced_reach(monkeypatch):
    """Mode 1 takes it wherever balanced_ok (fixed lengths, the packed rows in one block, no KPAR tile); mode 0 never;
    "auto" never for an explicit num_splits; a bad mode is a ValueError."""
    cpu, bf16 = torch.device("cpu"), torch.bfloat16
    cfg16 = K.DecodeConfig(16, 64, 4, 3, 2)
    assert K.balanced_ok(16, False, cfg16) and K.balanced_ok(1, False, cfg16)
    assert not K.balanced_ok(17, False, cfg16) and not K.balanced_ok(4, True, cfg16)
    assert not K.balanced_ok(4, False, K.KPAR_CONFIG) and not K.balanced_ok(0, False, cfg16)
    monkeypatch.setenv("TILEFOLD_DECODE_BALANCED", "1")
    assert K.balanced_choice(4, 128, bf16, cpu, False, False) is not None
    assert K.balanced_choice(4, 128, bf16, cpu, True, True) is None
    assert K.balanced_choice(17, 128, bf16, cpu, False, True) is None  # 17 rows: two 16-row blocks on CPU
    monkeypatch.setenv("TILEFOLD_DECODE_BALANCED", "0")
    assert K.balanced_choice(4, 128, bf16, cpu, False, True) is None
    monkeypatch.setenv("TILEFOLD_DECODE_BALANCED", "auto")
    assert K.balanced_choice(4, 128, bf16, cpu, False, False) is None
    monkeypatch.setenv("TILEFOLD_DECODE_BALANCED", "yes")
    with pytest.raises(ValueError, match="TILEFOLD_DECODE_BALANCED"):
        K.balanced_choice(4, 128, bf16, cpu, False, True)


def test_balanced_explicit_splits_keep_grid(balanced_on, monkeypatch):
    """Under "auto" an explicit num_splits keeps the (row blocks, B · HK, S) grid; the forced mode overrides it."""
    q = torch.randn(1, 1, 4, 16)
    k = torch.randn(1, 40, 1, 16)
    monkeypatch.setenv("TILEFOLD_DECODE_BALANCED", "auto")
    K.clear_plans()
    _run(q, k, k, (-1, -1), 0.0, num_splits=2)
    assert not next(iter(K._PLANS.values())).balanced


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", [K.DecodeConfig(16, 64, 4, 3, 2), K.DecodeConfig(16, 128, 4, 2, 3, use_tma=True),
                                 K.DecodeConfig(16, 32, 4, 4, 4, use_tma=True)], ids=["ptr64x3", "tma128x2", "tma32x4"])
@pytest.mark.parametrize("per_sm,align", [(1, False), (2, False), (2, True)])
@pytest.mark.parametrize("B,M,N,window", [(16, 1, 8192 + 7, (-1, -1)), (3, 1, 20000, (-1, 0)), (5, 4, 9000, (700, 0)),
                                          (1, 1, 131072, (-1, -1))])
def test_balanced_gpu(cfg, per_sm, align, B, M, N, window, monkeypatch):
    """bf16 hd128, 32 / 8 heads: 2x rule against fp64; a second call (counters reused) gives the same output."""
    monkeypatch.setattr(K, "BALANCED_FORCE", (cfg, per_sm, align))
    K.clear_plans()
    torch.manual_seed(B + M + N)
    H, HK, D = 32, 8, 128
    q = torch.randn(B, M, H, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    (ref_o, ref_l), (base_o, base_l) = window_ref(q, k, v, window, 0.0, torch.bfloat16)
    o, lse = _run(q, k, v, window, 0.0)
    (plan,) = K._PLANS.values()
    assert plan.balanced and plan.cons["BLOCK_N"] == cfg.BLOCK_N and plan.cons["ALIGN_HEADS"] == align
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", lse, ref_l, base_l)
    o2, lse2 = _run(q, k, v, window, 0.0)
    assert torch.equal(o, o2) and torch.equal(lse, lse2)
    K.clear_plans()
