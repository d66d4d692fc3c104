"""The longest-first program order (config.ORDER = "lpt", TILEFOLD_ORDER=lpt): same results as the
default head-by-head order (it only renumbers programs), through the Triton kernels under the
interpreter; an unknown order is a ValueError."""

import pytest
import torch

import attention_helpers as h

import tilefold
from tilefold.ops.attention import config as C


Case = h.Case

CASES = [
    Case(2, 45, 70, 4, 2, 32, causal=True),                 # GQA, causal, several query and key blocks
    Case(1, 70, 45, 4, 1, 40, window=(8, 3), softcap=5.0),  # MQA, window, padded head dim
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=h.dtype_id)
@pytest.mark.parametrize("case", CASES, ids=h.case_id)
def test_lpt_order_cpu(case, dtype, monkeypatch):
    monkeypatch.setattr(C, "ORDER", "lpt")
    h.check_case(case, dtype, backend="triton", device="cpu", grad=True, grad_into="both")


def test_lpt_order_matches_head_order_bitwise(monkeypatch):
    """Renumbering programs must not change a single bit (each output tile is computed by one program)."""
    torch.manual_seed(3)
    q = torch.randn(2, 40, 4, 32, requires_grad=True)
    k = torch.randn(2, 56, 2, 32, requires_grad=True)
    v = torch.randn(2, 56, 2, 32, requires_grad=True)
    do = torch.randn(2, 40, 4, 32)
    res = {}
    with h.backend_ctx("triton"):
        for order in ("head", "lpt"):
            monkeypatch.setattr(C, "ORDER", order)
            o = tilefold.attention(q, k, v, causal=True)
            res[order] = (o.detach(),) + torch.autograd.grad(o, (q, k, v), do)
    for a, b in zip(res["head"], res["lpt"]):
        assert torch.equal(a, b)


def test_unknown_order_is_a_value_error(monkeypatch):
    monkeypatch.setattr(C, "ORDER", "LPT")
    q = torch.randn(1, 8, 2, 16)
    with h.backend_ctx("triton"), pytest.raises(ValueError, match="TILEFOLD_ORDER"):
        tilefold.attention(q, q, q, causal=True)
