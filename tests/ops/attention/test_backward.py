"""Backward of exact attention: dq, dk, dv (and out, lse) against the fp64 reference's autograd under the
2x rule, with gradients flowing into out, into lse, or both. Also: rows that see no key give finite
gradients, deterministic=True is bitwise repeatable, the caller's tensors are never modified.

CPU tier: torch fold and Triton interpreter at small shapes (fp32/fp16); GPU tier: the full grid.
"""

import pytest
import torch

import attention_helpers as h


Case = h.Case
BACKENDS = ["torch", "triton"]

CPU_CASES = [
    Case(1, 1, 1, 2, 2, 64),
    Case(1, 17, 17, 4, 4, 40, causal=True),
    Case(1, 33, 1, 4, 1, 64, causal=True),
    Case(1, 1, 33, 4, 1, 64),
    Case(1, 33, 50, 8, 2, 72, causal=True),
    Case(2, 50, 33, 4, 2, 64, causal=True),
    Case(1, 50, 33, 4, 4, 96, window=(16, 0)),
    Case(1, 33, 50, 4, 4, 64, window=(8, 8)),
    Case(1, 40, 40, 4, 1, 64, window=(0, -1)),
    Case(1, 35, 35, 2, 2, 64, window=(-1, 3)),
    Case(1, 33, 47, 4, 4, 128, softcap=5.0),
    Case(1, 47, 33, 4, 1, 40, causal=True, softcap=30.0),
    Case(1, 17, 17, 2, 2, 256, causal=True),
    Case(1, 20, 20, 2, 2, 36, window=(4, 4)),
    Case(1, 113, 113, 2, 2, 64, causal=True),
    Case(2, 33, 33, 4, 2, 64, causal=True, layout="packed"),
    Case(1, 17, 40, 4, 2, 40, layout="packed"),
    Case(1, 33, 20, 4, 1, 40, window=(8, 0), layout="transposed"),
    Case(1, 20, 33, 4, 4, 72, softcap=5.0, layout="padded"),
]


@pytest.mark.parametrize("dtype", h.CPU_DTYPES, ids=h.dtype_id)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CPU_CASES, ids=h.case_id)
def test_backward_cpu(case, backend, dtype):
    h.check_case(case, dtype, backend=backend, device="cpu", grad=True, grad_into="both")


@pytest.mark.parametrize("case", CPU_CASES[:6], ids=h.case_id)
def test_backward_cpu_bf16_torch_path(case):
    h.check_case(case, torch.bfloat16, backend="torch", device="cpu", grad=True)


@pytest.mark.parametrize("grad_into", ["out", "lse"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [Case(1, 33, 20, 8, 2, 64, causal=True), Case(1, 20, 33, 4, 4, 40, softcap=5.0)],
                         ids=h.case_id)
def test_backward_grad_into(case, backend, grad_into):
    """Only out feeds the loss (no gradient into lse), or only lse does (no gradient into out)."""
    h.check_case(case, torch.float32, backend=backend, device="cpu", grad=True, grad_into=grad_into)


@h.cuda_guard
def _no_key_rows(c, dtype, backend, device):
    q, k, v = h.make_qkv(c, dtype, device)
    dout, dlse = h.make_grads(q, c.H, c.M)
    res = h.run_tilefold(q, k, v, c.opts, dout=dout, dlse=dlse, backend=backend)
    for n in ("out", "dq", "dk", "dv"):
        assert torch.isfinite(res[n]).all(), f"{n} has non-finite values"
    assert not torch.isnan(res["lse"]).any()
    return res


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [Case(1, 40, 9, 4, 2, 64, causal=True),      # first 31 rows see nothing
                                  Case(1, 20, 40, 2, 1, 40, window=(0, 0)),   # sq < sk: diagonal only
                                  Case(1, 30, 10, 2, 2, 64, window=(2, 0))],  # rows past the band
                         ids=h.case_id)
def test_rows_without_keys_backward(case, backend):
    res = _no_key_rows(case, torch.float32, backend, "cpu")
    if case.causal:
        n = case.M - case.N
        assert torch.all(res["dq"][:, :n] == 0)
        assert torch.all(res["out"][:, :n] == 0) and torch.isneginf(res["lse"][:, :, :n]).all()
    h.check_case(case, torch.float32, backend=backend, device="cpu", grad=True)


@h.cuda_guard
def _deterministic(c, dtype, backend, device):
    q, k, v = h.make_qkv(c, dtype, device)
    dout, dlse = h.make_grads(q, c.H, c.M)
    a = h.run_tilefold(q, k, v, c.opts, dout=dout, dlse=dlse, backend=backend, deterministic=True)
    b = h.run_tilefold(q, k, v, c.opts, dout=dout, dlse=dlse, backend=backend, deterministic=True)
    for n in ("out", "lse", "dq", "dk", "dv"):
        assert torch.equal(a[n], b[n]), f"{n} differs between two deterministic runs"


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic(backend):
    _deterministic(Case(1, 33, 40, 8, 2, 64, causal=True), torch.float32, backend, "cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_not_modified(backend):
    c = Case(1, 33, 33, 4, 2, 64, causal=True, layout="packed")
    q, k, v = h.make_qkv(c, torch.float16, "cpu")
    base = q._base if q._base is not None else q
    base_clone = base.clone()
    dout, dlse = h.make_grads(q, c.H, c.M)
    dout_c, dlse_c = dout.clone(), dlse.clone()
    h.run_tilefold(q, k, v, c.opts, dout=dout, dlse=dlse, backend=backend)
    assert torch.equal(base, base_clone), "the packed qkv tensor was modified"
    assert torch.equal(dout, dout_c) and torch.equal(dlse, dlse_c), "upstream gradients were modified"


# ---------------------------------------------------------------------------------------------------
# GPU tier


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", h.GPU_DTYPES, ids=h.dtype_id)
@pytest.mark.parametrize("case", h.gpu_grid(), ids=h.case_id)
def test_backward_gpu(case, dtype):
    h.check_case(case, dtype, device="cuda", grad=True)


GPU_LAYOUT_CASES = [
    Case(2, M, N, H, HK, D, causal=cz, layout=lay)
    for lay, (M, N), (H, HK), D, cz in h.rotate_grid(
        ("packed", "transposed", "padded"), [(113, 113), (1023, 1023), (113, 1023), (1023, 113)],
        [(4, 4), (8, 2)], (64, 72, 128), (False, True))
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", h.GPU_DTYPES, ids=h.dtype_id)
@pytest.mark.parametrize("case", GPU_LAYOUT_CASES, ids=h.case_id)
def test_backward_gpu_layouts(case, dtype):
    h.check_case(case, dtype, device="cuda", grad=True)


@pytest.mark.gpu
@pytest.mark.parametrize("grad_into", ["out", "lse"])
@pytest.mark.parametrize("dtype", h.GPU_DTYPES, ids=h.dtype_id)
@pytest.mark.parametrize("case", [Case(2, 1023, 113, 8, 2, 128, causal=True), Case(2, 113, 1023, 4, 4, 64),
                                  Case(2, 1023, 1023, 8, 1, 96, window=(32, 0), softcap=30.0)], ids=h.case_id)
def test_backward_grad_into_gpu(case, dtype, grad_into):
    h.check_case(case, dtype, device="cuda", grad=True, grad_into=grad_into)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", h.GPU_DTYPES, ids=h.dtype_id)
@pytest.mark.parametrize("case", [Case(2, 1023, 113, 8, 2, 128, causal=True),
                                  Case(2, 1023, 1023, 4, 4, 64, window=(0, 0)),
                                  Case(2, 1023, 1023, 4, 1, 256, window=(16, 16))], ids=h.case_id)
def test_rows_without_keys_backward_gpu(case, dtype):
    _no_key_rows(case, dtype, None, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", h.GPU_DTYPES, ids=h.dtype_id)
@pytest.mark.parametrize("case", [Case(2, 1023, 1023, 8, 2, 128, causal=True), Case(2, 1023, 113, 8, 1, 64),
                                  Case(2, 113, 1023, 16, 4, 256, softcap=30.0)], ids=h.case_id)
def test_deterministic_gpu(case, dtype):
    _deterministic(case, dtype, None, "cuda")
