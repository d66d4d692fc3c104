"""One 64-row block (33-64 packed rows, e.g. seqlen_q 16 with G = 4), 16-bit hd128: below one wave of (batch, key head)
programs the split choice gives at most one program per SM and the plan the 4-stage 64-key tile (BLOCK64_CONFIG, swept
on an H200: benchmarks/NOTES.md, "Decode: seqlen_q 16 tiles"); launches of more than one program per SM keep the v2
tile, and batches of at least one unsplit program per SM the bandwidth model. Host policy on the CPU tier (as on a
132-SM GPU), the tile's results on the GPU tier (2x rule against fp64)."""
import pytest
import torch

from decode_helpers import assert_2x, window_ref
from tilefold.ops.decode import kernel as K
from tilefold.ops.decode import split_kv_attention


def test_split_choice_one_per_sm(gpu_policy, monkeypatch):
    SK = gpu_policy
    bf16 = torch.bfloat16
    choose = lambda B, M=16, N=131072, D=128, dt=bf16: SK.choose_num_splits(  # noqa: E731
        B, 32, M, N, D, dt, "cuda", heads_k=8)
    assert [choose(B) for B in (1, 4, 8, 16)] == [16, 4, 2, 1]
    assert choose(1, N=4096) == 8  # no split of fewer than 512 keys
    assert choose(1, M=9) == 16  # 36 rows: still one 64-row block
    assert choose(32) == 1  # two waves of programs: the bandwidth model (as before)
    assert choose(17, N=32768) == 9  # the model with the v2 tile (as before; BLOCK64_CONFIG's one per SM would say 16)
    assert choose(3) == 5  # 24 programs: 5 splits (120 programs), not 6 (144: a partial second wave)
    assert K.one_per_sm(1, 1 << 20, 132) == 128 and K.one_per_sm(8, 4096, 132) == 8
    # only the band takes one_per_sm: two waves, 32 rows, hd64, fp32 and 16 rows go elsewhere
    SK._choose_cached.cache_clear()
    monkeypatch.setattr(SK, "one_per_sm", lambda *a: 99)
    assert choose(1) == 99 and choose(16, M=12, dt=torch.float16) == 99
    for args in [dict(B=32), dict(B=1, M=8), dict(B=1, D=64), dict(B=1, dt=torch.float32), dict(B=1, M=4)]:
        assert choose(**args) != 99, args


def test_select_config_block64(gpu_policy):
    cuda, bf16 = torch.device("cuda"), torch.bfloat16
    sel = K.select_config
    assert K.BLOCK64_CONFIG == K.DecodeConfig(64, 64, 4, 4, 1)  # the swept tile (call 70)
    assert sel(64, 128, bf16, cuda, 131072, 16, 8, 132, "auto") == K.BLOCK64_CONFIG
    assert sel(48, 128, torch.float16, cuda, 32768, 1, 128, 132, "auto") == K.BLOCK64_CONFIG
    assert sel(64, 128, bf16, cuda, 8192, 1, 132, 132, "auto") == K.BLOCK64_CONFIG
    # more programs than SMs (an explicit num_splits, B = 17 / 32), other rows / head dims / dtypes: not this tile
    v2 = K.DecodeConfig(64, 64, 4, 3, 2)
    assert sel(64, 128, bf16, cuda, 8192, 1, 136, 132, "auto") == v2
    assert sel(64, 128, bf16, cuda, 131072, 17, 8, 132, "auto") == v2
    for args in [(64, 128, bf16, cuda, 131072, 27, 8, 132), (64, 128, bf16, cuda, 8192, 1, 256, 132),
                 (32, 128, bf16, cuda, 8192, 16, 8, 132), (64, 64, bf16, cuda, 8192, 16, 8, 132),
                 (64, 128, torch.float32, cuda, 8192, 16, 8, 132), (65, 128, bf16, cuda, 8192, 16, 8, 132)]:
        assert sel(*args, "auto") != K.BLOCK64_CONFIG, args


@pytest.mark.parametrize("M,H,programs_per_head", [(16, 32, 1), (9, 32, 1), (1, 32, 1), (32, 32, 8), (16, 8, 1)])
def test_plan_counts_block_programs(M, H, programs_per_head, monkeypatch):
    """The plan tells select_config how many programs the launch has per split: 64-row blocks in the block64 band
    (seqlen_q 16 or 9 with G = 4), 16-row blocks elsewhere (seqlen_q 1; 128 rows: 8 blocks; MHA: 16 rows)."""
    seen = []
    real = K.select_config

    def spy(*args):
        seen.append(args[6])
        return real(*args)
    monkeypatch.setattr(K, "select_config", spy)
    B, HK = 3, 8
    q = torch.randn(B, M, H, 128, dtype=torch.bfloat16)
    k = torch.randn(B, 100, HK, 128, dtype=torch.bfloat16)
    K._make_plan(q, k, k, 2, 0.1, (-1, -1), 0.0, None, None, None, None)
    assert seen == [B * HK * programs_per_head]


@pytest.mark.gpu
@pytest.mark.parametrize("B,window", [(1, (-1, -1)), (1, (-1, 0)), (4, (-1, -1)), (2, (1000, 0))])
def test_block64_gpu(B, window):
    """bf16 hd128, 32 / 8 heads, seqlen_q 16 (64 packed rows), num_splits=0: the plan takes BLOCK64_CONFIG with about
    one program per SM (unless the window fills fewer splits); 2x rule against fp64."""
    K.clear_plans()
    torch.manual_seed(B + window[0])
    M, N, H, HK, D = 16, 8192 + 5, 32, 8, 128
    q = torch.randn(B, M, H, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    (ref_o, ref_l), (base_o, base_l) = window_ref(q, k, v, window, 0.0, torch.bfloat16)
    o, l = split_kv_attention(q, k, v, num_splits=0, softmax_scale=D ** -0.5, window=window, softcap=0.0)
    plans = list(K._PLANS.values())
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    assert len(plans) == 1
    assert (plans[0].cons["BLOCK_M"], plans[0].cons["BLOCK_N"], plans[0].options["num_stages"]) == (64, 64, 4)
    visible = N if window[0] < 0 else M + window[0]
    assert plans[0].S <= K.one_per_sm(B * HK, visible, sms)
    if window[0] < 0:  # one_per_sm's count, lowered to the 64-key-aligned splits that 8197 keys fill (16 -> 15)
        S0 = K.one_per_sm(B * HK, N, sms)
        size = K.cdiv(K.cdiv(N, S0), 64) * 64
        assert plans[0].S == K.cdiv(N, size)
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", l, ref_l, base_l)
