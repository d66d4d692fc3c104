"""One 64-row block (17-64 packed rows, e.g. seqlen_q 16 or 8 with G = 4), 16-bit hd128: where at most one program per
SM fills 0.9-1 x the SMs, the split choice gives that count and the plan the 4-stage 64-key tile (BLOCK64_CONFIG, swept
on an H200: benchmarks/NOTES.md, "Decode: seqlen_q 16 tiles"); other launches keep the v2 tile and the bandwidth
model. Host policy on the CPU tier (as on a 132-SM GPU), the tile's results on the GPU tier (2x rule against fp64)."""
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
    assert [choose(B) for B in (1, 2, 3, 4, 5, 8, 15, 16)] == [16, 8, 5, 4, 3, 2, 1, 1]
    assert [choose(B, M=8) for B in (1, 4, 8, 16)] == [16, 4, 2, 1]  # 32 rows: the same tile
    assert choose(1, M=9) == 16  # 36 rows: still one 64-row block
    assert choose(32) == 1  # two waves of programs: the bandwidth model (as before)
    assert choose(17, N=32768) == 9  # the model with the v2 tile (as before; BLOCK64_CONFIG's one per SM would say 16)
    assert choose(3) == 5  # 24 programs: 5 splits (120 programs), not 6 (144: a partial second wave)
    # one per SM would leave SMs idle (B = 6: 96 programs, B = 12: 96 unsplit): the model, as before
    def model(B, M=16, N=131072):
        ctas = K.decode_config(M * 4, 128, bf16, torch.device("cuda")).ctas_per_sm
        return SK.decode_splits(B * 8, N, 64, 2 * 128 * 2, B * M * 32 * 129 * 4, 132, ctas)
    for B in (6, 7, 9, 12, 14):
        assert choose(B) == model(B) and choose(B, M=8) == model(B, M=8), B
    assert choose(1, N=4096) == model(1, N=4096)  # no split under 512 keys: 8 splits would fill 64 SMs -> the model
    assert K.one_per_sm(1, 1 << 20, 132) == 128 and K.one_per_sm(8, 4096, 132) == 8
    # only the band takes one_per_sm: two waves, 68 rows, hd64, fp32 and 16 rows go elsewhere
    SK._choose_cached.cache_clear()
    monkeypatch.setattr(SK, "one_per_sm", lambda *a: 77)  # more splits than the model gives 999 keys
    monkeypatch.setattr(SK, "fills_one_wave", lambda *a: True)
    assert choose(1, N=999) == 77 and choose(16, M=12, dt=torch.float16, N=999) == 77 and choose(1, M=5, N=999) == 77
    for args in [dict(B=32), dict(B=1, M=17), dict(B=1, D=64), dict(B=1, dt=torch.float32), dict(B=1, M=4)]:
        assert choose(**args, N=999) != 77, args


def test_select_config_block64(gpu_policy):
    cuda, bf16 = torch.device("cuda"), torch.bfloat16
    sel = K.select_config
    assert K.BLOCK64_CONFIG == K.DecodeConfig(64, 64, 4, 4, 1)  # the swept tile (call 70)
    assert sel(64, 128, bf16, cuda, 131072, 16, 8, 132, "auto") == K.BLOCK64_CONFIG
    assert sel(48, 128, torch.float16, cuda, 32768, 1, 128, 132, "auto") == K.BLOCK64_CONFIG
    assert sel(64, 128, bf16, cuda, 8192, 1, 132, 132, "auto") == K.BLOCK64_CONFIG
    assert sel(32, 128, bf16, cuda, 8192, 16, 8, 132, "auto") == K.BLOCK64_CONFIG  # 32 rows too
    # more programs than SMs (an explicit num_splits, B = 17 / 32), fewer than 0.9 x SMs (96), other rows / head dims /
    # dtypes: not this tile
    v2 = K.DecodeConfig(64, 64, 4, 3, 2)
    assert sel(64, 128, bf16, cuda, 8192, 1, 136, 132, "auto") == v2
    assert sel(64, 128, bf16, cuda, 131072, 17, 8, 132, "auto") == v2
    assert sel(64, 128, bf16, cuda, 8192, 1, 96, 132, "auto") == v2
    assert sel(32, 128, bf16, cuda, 8192, 1, 96, 132, "auto") == K.DecodeConfig(32, 64, 4, 3, 2)
    for args in [(64, 128, bf16, cuda, 131072, 27, 8, 132), (64, 128, bf16, cuda, 8192, 1, 256, 132),
                 (16, 128, bf16, cuda, 8192, 16, 8, 132), (64, 64, bf16, cuda, 8192, 16, 8, 132),
                 (64, 128, torch.float32, cuda, 8192, 16, 8, 132), (65, 128, bf16, cuda, 8192, 16, 8, 132)]:
        assert sel(*args, "auto") != K.BLOCK64_CONFIG, args


@pytest.mark.parametrize("M,H,programs_per_head", [(16, 32, 1), (9, 32, 1), (8, 32, 1), (1, 32, 1), (32, 32, 8),
                                                    (16, 8, 1)])
def test_plan_counts_block_programs(M, H, programs_per_head, monkeypatch):
    """The plan tells select_config how many programs the launch has per split: 64-row blocks in the block64 band
    (seqlen_q 16, 9 or 8 with G = 4), 16-row blocks elsewhere (seqlen_q 1; 128 rows: 8 blocks; MHA: 16 rows)."""
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
@pytest.mark.parametrize("B,M,window,on_h200", [(1, 16, (-1, -1), True), (1, 16, (-1, 0), True),
                                                (4, 16, (-1, -1), True), (2, 8, (-1, -1), True),
                                                (2, 16, (1000, 0), False), (6, 16, (-1, -1), False)])
def test_block64_gpu(B, M, window, on_h200):
    """bf16 hd128, 32 / 8 heads, seqlen_q 16 or 8 (64 / 32 packed rows), num_splits=0: where one_per_sm's launch fills
    0.9-1 x the SMs (on an H200: ``on_h200``) the split count is one_per_sm's; the plan takes BLOCK64_CONFIG wherever
    the chosen count's launch fills one wave (also the model's 8 splits of a 1016-key window), the v2 tile elsewhere
    (B = 6: 96 programs); 2x rule against fp64."""
    from tilefold.ops.decode import choose_num_splits
    K.clear_plans()
    torch.manual_seed(B + M + window[0])
    N, H, HK, D = 8192 + 5, 32, 8, 128
    q = torch.randn(B, M, H, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    (ref_o, ref_l), (base_o, base_l) = window_ref(q, k, v, window, 0.0, torch.bfloat16)
    o, l = split_kv_attention(q, k, v, num_splits=0, softmax_scale=D ** -0.5, window=window, softcap=0.0)
    plans = list(K._PLANS.values())
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    assert len(plans) == 1
    tile = (plans[0].cons["BLOCK_M"], plans[0].cons["BLOCK_N"], plans[0].options["num_stages"])
    S0 = K.one_per_sm(B * HK, N if window[0] < 0 else M + window[0], sms)
    S = choose_num_splits(B, H, M, N, D, q.dtype, q.device, heads_k=HK, window=window)
    if sms == 132:
        assert K.fills_one_wave(B * HK * S0, sms) == on_h200
    if K.fills_one_wave(B * HK * S0, sms):
        assert S == S0
        size = K.cdiv(K.cdiv(N, S0), 64) * 64  # lowered to the 64-key-aligned splits that 8197 keys fill
        assert plans[0].S == K.cdiv(N, size)
    assert tile == ((64, 64, 4) if K.fills_one_wave(B * HK * S, sms) else (M * 4, 64, 3))
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", l, ref_l, base_l)
