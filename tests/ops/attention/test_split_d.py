"""The dK/dV kernel with its head dim split over two programs (``KernelConfig.dkdv_split_d = 2``: each
program computes S and dP over the full head dim, accumulates and stores half of dK/dV's columns),
forced through a patched ``bwd_config``: dq, dk, dv (and out, lse) under the 2x rule against the fp64
reference, with masks, GQA/MQA, padded head dims (the second half partly past D), varlen, softcap and
dropout. A spy on the launch checks the split really ran (fp32 falls back to one program per block).

CPU tier: Triton interpreter, fp16 (fp32 for the fallback); GPU tier: head dim 256 at the hd256 tile.
"""

import pytest
import torch

import attention_helpers as h

import tilefold
from tilefold.ops.attention import backward as BW
from tilefold.ops.attention import config as C
from tilefold.ops.attention.naive import attention_ref


Case = h.Case

CPU_SPLIT = C.KernelConfig(16, 16, 4, 1, dkdv_split_d=2)
GPU_SPLIT = C.KernelConfig(64, 64, 8, 2, use_tma=True, dkdv_split_d=2,
                           pointer=C.KernelConfig(32, 64, 4, 1, dkdv_split_d=2))


@pytest.fixture
def forced_split(monkeypatch):
    """Patch bwd_config to ``cfg`` (CPU: CPU_SPLIT) and record the SPLIT_D of every dK/dV launch."""
    seen, tma = [], []
    kern = BW.attention_bwd_dkdv_kernel

    class Spy:
        def __getitem__(self, grid):
            launch = kern[grid]

            def call(*a, **kw):
                seen.append(kw["SPLIT_D"])
                tma.append(kw["USE_TMA"])
                return launch(*a, **kw)
            return call

    monkeypatch.setattr(BW, "attention_bwd_dkdv_kernel", Spy())
    monkeypatch.setattr(C, "BWD_SM90", "0")  # this file tests backward.py's kernel (Hopper hd256 takes Gluon's)

    def force(cfg=CPU_SPLIT):
        """cfg None: the shipped bwd_config; returns the SPLIT_D list (``force.tma``: USE_TMA per launch)."""
        if cfg is not None:
            monkeypatch.setattr(C, "bwd_config", lambda *a, **kw: cfg)
        return seen
    force.tma = tma
    return force


CPU_CASES = [
    Case(1, 33, 50, 8, 2, 32, causal=True),                       # GQA, causal, sq < sk
    Case(2, 50, 33, 4, 4, 64, window=(16, 0)),                    # window, sq > sk
    Case(1, 35, 35, 4, 1, 32, window=(4, 4), softcap=5.0),        # MQA, two-sided window, softcap
    Case(1, 20, 33, 4, 2, 40, softcap=5.0, layout="padded"),      # D 40 in BLOCK_D 64: half 2 has 8 columns
    Case(1, 17, 1, 2, 2, 36, causal=True),                        # one key: rows that see none
]


@pytest.mark.parametrize("case", CPU_CASES, ids=h.case_id)
def test_split_d_cpu(case, forced_split):
    seen = forced_split()
    h.check_case(case, torch.float16, backend="triton", device="cpu", grad=True, grad_into="both")
    assert seen and all(s == 2 for s in seen), seen


def test_split_d_fp32_falls_back(forced_split):
    """fp32 keeps one program per key block (its exact delta needs dP as one dot); still correct."""
    seen = forced_split()
    h.check_case(Case(1, 33, 20, 4, 2, 32, causal=True), torch.float32, backend="triton", device="cpu",
                 grad=True)
    assert seen == [1]


def test_split_d_small_head_dim_falls_back(forced_split):
    """BLOCK_D 16 would leave 8 columns per half (under the smallest dot): one program per block."""
    seen = forced_split()
    h.check_case(Case(1, 17, 20, 2, 2, 16), torch.float16, backend="triton", device="cpu", grad=True)
    assert seen == [1]


@pytest.mark.parametrize("opts", [dict(causal=True), dict(window_size=(6, 2))], ids=["causal", "win6_2"])
def test_split_d_varlen_cpu(opts, forced_split):
    seen = forced_split()
    lens_q, lens_k = [5, 0, 1, 20], [9, 4, 1, 24]
    H, HK, D, dtype = 4, 2, 32, torch.float16
    q = torch.randn(sum(lens_q), H, D).to(dtype)
    k = torch.randn(sum(lens_k), HK, D).to(dtype)
    v = torch.randn(sum(lens_k), HK, D).to(dtype)
    meta = (h.make_cu(lens_q, "cpu"), h.make_cu(lens_k, "cpu"), max(lens_q), max(lens_k))
    dout, dlse = h.make_grads(q, H, None)
    res = h.run_tilefold(q, k, v, opts, dout=dout, dlse=dlse, backend="triton", varlen=meta)
    ref64 = h.run_reference(q, k, v, opts, torch.float64, dout=dout, dlse=dlse, varlen=meta)
    low = h.run_reference(q, k, v, opts, dtype, dout=dout, dlse=dlse, varlen=meta)
    h.check_all(res, ref64, low, label=f"varlen split_d {opts}")
    assert seen and all(s == 2 for s in seen), seen


def _err(a, b):
    return (a.double() - b.double()).abs().max().item()


def _dropout_grads(device, dtype, B, M, N, H, HK, D, p, **mask):
    """Gradients through the regenerated dropout mask against the reference fed the same mask (decoded
    from the returned probabilities' sign bits), under the 2x rule."""
    with tilefold.use_backend("triton"):
        q = torch.randn(B, M, H, D, device=device, dtype=dtype, requires_grad=True)
        k = torch.randn(B, N, HK, D, device=device, dtype=dtype, requires_grad=True)
        v = torch.randn(B, N, HK, D, device=device, dtype=dtype, requires_grad=True)
        torch.manual_seed(11)
        _, _, S = tilefold.attention(q, k, v, dropout_p=p, return_attn_probs=True, **mask)
        torch.manual_seed(11)
        out = tilefold.attention(q, k, v, dropout_p=p, **mask)
        do = torch.randn_like(out)
        g = torch.autograd.grad(out, (q, k, v), do)
    keep = ~torch.signbit(S)
    ref, _ = attention_ref(q, k, v, dropout_p=p, keep=keep, **mask)
    low, _ = attention_ref(q, k, v, dropout_p=p, keep=keep, compute_dtype=dtype, **mask)
    rg = torch.autograd.grad(ref, (q, k, v), do.double())
    lg = torch.autograd.grad(low, (q, k, v), do)
    for name, a, r, lo in zip(("dq", "dk", "dv"), g, rg, lg):
        assert _err(a, r) <= 2 * _err(lo, r) + 1e-5, (name, _err(a, r), _err(lo, r))


def test_split_d_dropout_cpu(forced_split):
    seen = forced_split()
    _dropout_grads("cpu", torch.float16, 2, 37, 45, 4, 2, 32, 0.3, causal=True, window_size=(20, -1))
    assert seen and all(s == 2 for s in seen), seen


# ---------------------------------------------------------------------------------------------------
# GPU tier: the hd256 tile (descriptors; pointer loads for the padded head dim 200)

GPU_CASES = [
    Case(2, 300, 300, 4, 4, 256),
    Case(1, 113, 1023, 8, 2, 256, causal=True),
    Case(1, 1023, 113, 4, 1, 256, window=(64, 8), softcap=20.0),
    Case(1, 257, 257, 4, 2, 200, causal=True),
]


def _expect_split(seen, tma):
    """The shipped hd256 config splits the dK/dV head dim on the descriptor path; its pointer fallback
    (strides a descriptor can't take) keeps one program per key block."""
    assert seen and len(seen) == len(tma), (seen, tma)
    assert all(s == (2 if t else 1) for s, t in zip(seen, tma)), list(zip(seen, tma))


def test_shipped_hd256_bwd_config_splits(monkeypatch):
    monkeypatch.setattr(C, "interpreter_enabled", lambda: False)  # the CPU tier runs under the interpreter
    cfg = C.bwd_config(256, False, torch.bfloat16, torch.device("cuda"))
    assert (cfg.BLOCK_M, cfg.BLOCK_N, cfg.dkdv_split_d, cfg.use_tma) == (32, 128, 2, True)
    assert cfg.for_pointers().dkdv_split_d == 1
    assert (cfg.dq_config().BLOCK_M, cfg.dq_config().BLOCK_N) == (64, 64)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", ["shipped", "split64"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=h.dtype_id)
@pytest.mark.parametrize("case", GPU_CASES, ids=h.case_id)
def test_split_d_gpu(case, dtype, cfg, forced_split):
    """shipped: bwd_config's hd256 tile (32x128 split 2); split64: the 64x64 split tile, also on pointers."""
    seen = forced_split(None if cfg == "shipped" else GPU_SPLIT)
    h.check_case(case, dtype, grad=True)
    if cfg == "shipped":
        _expect_split(seen, forced_split.tma)
        if case.D == 256:
            assert all(forced_split.tma), forced_split.tma  # contiguous hd256 takes descriptors
    else:
        assert seen and all(s == 2 for s in seen), seen


@pytest.mark.gpu
def test_split_d_dropout_gpu(forced_split):
    seen = forced_split(None)
    _dropout_grads("cuda", torch.bfloat16, 2, 257, 300, 4, 2, 256, 0.17, causal=True)
    _expect_split(seen, forced_split.tma)
    assert all(forced_split.tma), forced_split.tma
