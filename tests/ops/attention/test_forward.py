"""Forward of exact attention (out and lse) against the fp64 reference under the 2x rule.

CPU tier: the torch fold and the Triton kernels under the interpreter, small odd shapes, fp32/fp16 (bf16 on
the torch path only). GPU tier (`pytest -m gpu`): the full grid on CUDA in bf16/fp16/fp32.
"""

import pytest
import torch

import attention_helpers as h

import tilefold


Case = h.Case

# Small cases that each hit something: one row / one key, rows that see no key (sq > sk causal),
# GQA and MQA, odd and non-multiple-of-16 head dims, every mask kind, softcap, several tiles of 16.
CPU_CASES = [
    Case(1, 1, 1, 2, 2, 64),
    Case(2, 17, 17, 4, 4, 40),
    Case(1, 17, 17, 4, 4, 40, causal=True),
    Case(1, 1, 33, 4, 1, 64, causal=True),
    Case(1, 33, 1, 4, 1, 64, causal=True),
    Case(1, 33, 70, 4, 1, 72, causal=True),
    Case(2, 50, 33, 8, 2, 64, causal=True),
    Case(1, 70, 33, 4, 4, 96, window=(16, 0)),
    Case(1, 33, 70, 4, 4, 64, window=(8, 8)),
    Case(1, 48, 48, 4, 1, 64, window=(0, -1)),
    Case(1, 40, 40, 2, 2, 64, window=(0, 0)),
    Case(1, 35, 35, 4, 2, 64, window=(-1, 3)),
    Case(1, 33, 33, 4, 2, 64, causal=True, window=(8, -1)),
    Case(1, 20, 50, 2, 2, 64, window=(100, 100)),
    Case(1, 33, 47, 4, 4, 128, softcap=5.0),
    Case(1, 47, 33, 4, 1, 40, causal=True, softcap=30.0),
    Case(1, 17, 17, 2, 2, 256, causal=True),
    Case(1, 20, 20, 2, 2, 36, window=(4, 4)),
    Case(1, 113, 113, 2, 2, 64, causal=True),
    Case(1, 1, 17, 2, 1, 24, window=(3, 0)),
]
CPU_LAYOUTS = [
    Case(2, 33, 33, 4, 2, 64, causal=True, layout="packed"),
    Case(1, 17, 40, 4, 2, 64, causal=True, layout="packed"),
    Case(2, 33, 20, 4, 1, 40, window=(8, 0), layout="transposed"),
    Case(1, 20, 33, 4, 4, 72, softcap=5.0, layout="padded"),
]
BACKENDS = ["torch", "triton"]


@pytest.mark.parametrize("dtype", h.CPU_DTYPES, ids=h.dtype_id)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CPU_CASES + CPU_LAYOUTS, ids=h.case_id)
def test_forward_cpu(case, backend, dtype):
    h.check_case(case, dtype, backend=backend, device="cpu")


@pytest.mark.parametrize("case", CPU_CASES[:8] + CPU_LAYOUTS[:1], ids=h.case_id)
def test_forward_cpu_bf16_torch_path(case):
    h.check_case(case, torch.bfloat16, backend="torch", device="cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_scale_and_no_lse(backend):
    c = Case(1, 17, 33, 4, 2, 64, causal=True)
    q, k, v = h.make_qkv(c, torch.float32, "cpu")
    opts = dict(c.opts, softmax_scale=0.37)
    res = h.run_tilefold(q, k, v, opts, backend=backend)
    h.check_all(res, h.run_reference(q, k, v, opts, torch.float64), h.run_reference(q, k, v, opts, torch.float32))
    with tilefold.use_backend(backend):
        out = tilefold.attention(q, k, v, softmax_scale=0.37, causal=True)
    assert isinstance(out, torch.Tensor) and out.shape == q.shape
    assert torch.equal(out, res["out"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_without_keys(backend):
    """sq > sk causal: the first sq - sk rows see no key -> out exactly 0, lse exactly -inf."""
    c = Case(1, 40, 9, 4, 2, 64, causal=True)
    res, _ = h.check_case(c, torch.float32, backend=backend, device="cpu")
    n_empty = c.M - c.N
    assert torch.all(res["out"][:, :n_empty] == 0)
    assert torch.all(torch.isneginf(res["lse"][:, :, :n_empty]))
    assert torch.isfinite(res["lse"][:, :, n_empty:]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_lse_shape_dtype(backend):
    c = Case(2, 17, 9, 4, 1, 40)
    for dtype in h.CPU_DTYPES:
        q, k, v = h.make_qkv(c, dtype, "cpu")
        with tilefold.use_backend(backend):
            out, lse = tilefold.attention(q, k, v, return_lse=True)
        assert out.shape == q.shape and out.dtype == dtype and out.device == q.device
        assert lse.shape == (2, 4, 17) and lse.dtype == torch.float32


# ---------------------------------------------------------------------------------------------------
# GPU tier: the full grid


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", h.GPU_DTYPES, ids=h.dtype_id)
@pytest.mark.parametrize("case", h.gpu_grid(), ids=h.case_id)
def test_forward_gpu(case, dtype):
    h.check_case(case, dtype, device="cuda")


GPU_LAYOUT_CASES = [
    Case(2, M, N, H, HK, D, causal=cz, layout=lay)
    for lay, (M, N), (H, HK), D, cz in h.rotate_grid(
        ("packed", "transposed", "padded"), [(113, 113), (1023, 1023), (113, 1023), (1023, 113)],
        [(4, 4), (8, 2)], (64, 72, 128), (False, True))
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", h.GPU_DTYPES, ids=h.dtype_id)
@pytest.mark.parametrize("case", GPU_LAYOUT_CASES, ids=h.case_id)
def test_forward_gpu_layouts(case, dtype):
    h.check_case(case, dtype, device="cuda")


@pytest.mark.gpu
def test_rows_without_keys_gpu():
    for dtype in h.GPU_DTYPES:
        c = Case(2, 1023, 113, 8, 2, 128, causal=True)
        res, _ = h.check_case(c, dtype, device="cuda")
        n_empty = c.M - c.N
        assert torch.all(res["out"][:, :n_empty] == 0)
        assert torch.all(torch.isneginf(res["lse"][:, :, :n_empty]))
