"""chunk_gla's backward variants (TILEFOLD_GLA_BWD, tilefold/ops/gla/chunk_bwd.py): each against the fp64
recurrence, v5 against v4, and the variant selection. CPU tier: the kernels under the interpreter in
fp32 (v5 runs its bf16 kernel's math with fp32 operands there); GPU tier: bf16 per variant."""
import zlib

import pytest
import torch

from tilefold.ops.common.dispatch import use_backend
from tilefold.ops.gla.chunk_bwd import VARIANTS, bwd_variant, state_dtype

from gla_helpers import MODES, TOL, check_all, make_inputs, reference, rms_rel, run_with_grads

# K != V both ways (several value / key column blocks per chunk), odd lengths, one short sequence
SHAPES = [(2, 63, 2, 60, 64), (1, 70, 2, 32, 128), (1, 129, 1, 128, 32)]


def _ids(s):
    return "B{}-T{}-H{}-K{}-V{}".format(*s)


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
@pytest.mark.parametrize("variant", ["v4", "v5"])
def test_variant_vs_reference(variant, shape, monkeypatch):
    monkeypatch.setenv("TILEFOLD_GLA_BWD", variant)
    torch.manual_seed(zlib.crc32(repr((variant, shape)).encode()))  # stable across processes
    q, k, v, g, h0 = make_inputs(*shape)
    do, dht = torch.randn_like(v), torch.randn_like(h0)
    ref = reference(q, k, v, g, h0, do, dht)
    with use_backend("triton"):
        out = run_with_grads(MODES["chunk"], q, k, v, g, h0, do, dht)
    check_all(out, ref, TOL[torch.float32], f"{variant} {shape}")


# m = 0.3: every chunk takes v5's kernel; 1.2 and 20: none does (v4's sub-chunk kernels, SKIP_FAST);
# mixed: floored gates at a few positions put single chunks on the fallback among v5 chunks
@pytest.mark.parametrize("regime", ["chunk-dots", "subchunk", "mixed"])
def test_v5_matches_v4(regime, monkeypatch):
    torch.manual_seed(21)
    q, k, v, g, h0 = make_inputs(1, 200, 2, 64, 64)
    g = -torch.rand_like(g) * {"chunk-dots": 0.3, "subchunk": 1.2, "mixed": 0.3}[regime]
    if regime == "mixed":
        g[:, [5, 130]] = -1e4
    do, dht = torch.randn_like(v), torch.randn_like(h0)
    outs = {}
    with use_backend("triton"):
        for var in ("v4", "v5"):
            monkeypatch.setenv("TILEFOLD_GLA_BWD", var)
            outs[var] = run_with_grads(MODES["chunk"], q, k, v, g, h0, do, dht)
    for name, a, b in zip(("o", "ht", "dq", "dk", "dv", "dg", "dh0"), outs["v4"], outs["v5"]):
        assert rms_rel(b, a) <= 2e-6, (regime, name, rms_rel(b, a))
    check_all(outs["v5"], reference(q, k, v, g, h0, do, dht), TOL[torch.float32], regime)


def test_variant_selection(monkeypatch):
    monkeypatch.delenv("TILEFOLD_GLA_BWD", raising=False)
    assert bwd_variant(torch.bfloat16, 128, 128) == "v5"
    assert bwd_variant(torch.bfloat16, 256, 128) == "v4"
    assert bwd_variant(torch.float16, 64, 64) == "v4"
    assert bwd_variant(torch.float32, 64, 64) == "v4"
    assert bwd_variant(torch.float32, 64, 64, "cpu") == "v5"
    assert state_dtype(torch.bfloat16, 128, 128) == torch.float32
    monkeypatch.setenv("TILEFOLD_GLA_BWD", "v5b")
    assert state_dtype(torch.bfloat16, 128, 128) == torch.bfloat16
    assert state_dtype(torch.float32, 128, 128, "cpu") == torch.float32
    monkeypatch.setenv("TILEFOLD_GLA_BWD", "v6")
    with pytest.raises(ValueError, match="TILEFOLD_GLA_BWD"):
        bwd_variant(torch.bfloat16, 128, 128)
    # a bad switch is the backward's error: the forward's state dtype still resolves (inference works)
    assert state_dtype(torch.bfloat16, 128, 128) == torch.float32


@pytest.mark.gpu
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("shape", [(2, 1000, 4, 128, 128), (2, 300, 3, 60, 64)], ids=_ids)
def test_gpu_variant_bf16(variant, shape, monkeypatch):
    monkeypatch.setenv("TILEFOLD_GLA_BWD", variant)
    torch.manual_seed(22)
    q, k, v, g, h0 = make_inputs(*shape, dtype=torch.bfloat16, device="cuda")
    do, dht = torch.randn_like(v), torch.randn_like(h0)
    out = run_with_grads(MODES["chunk"], q, k, v, g, h0, do, dht)
    check_all(out, reference(q, k, v, g, h0, do, dht), TOL[torch.bfloat16], f"{variant} {shape}")


@pytest.mark.parametrize("bs,warps", [(16, 4), (32, 4)])
def test_v5_column_blocks(bs, warps, monkeypatch):
    """The v5 kernel's per-program column block (TILEFOLD_GLA_V5_BS): several dv and dq/dk/dg programs
    per chunk, K not a multiple of the block."""
    monkeypatch.setenv("TILEFOLD_GLA_BWD", "v5")
    monkeypatch.setenv("TILEFOLD_GLA_V5_BS", str(bs))
    monkeypatch.setenv("TILEFOLD_GLA_V5_WARPS", str(warps))
    torch.manual_seed(23)
    q, k, v, g, h0 = make_inputs(1, 90, 2, 60, 64)
    do, dht = torch.randn_like(v), torch.randn_like(h0)
    with use_backend("triton"):
        out = run_with_grads(MODES["chunk"], q, k, v, g, h0, do, dht)
    check_all(out, reference(q, k, v, g, h0, do, dht), TOL[torch.float32], f"BS {bs}")


def test_serial_kernel_overrides(monkeypatch):
    """TILEFOLD_GLA_FWDH / TILEFOLD_GLA_DH (device sweeps) change only launch shapes: same results."""
    monkeypatch.setenv("TILEFOLD_GLA_BWD", "v5")  # TILEFOLD_GLA_DH applies to v5's bwd_dh only
    torch.manual_seed(24)
    q, k, v, g, h0 = make_inputs(1, 100, 2, 64, 128)
    do, dht = torch.randn_like(v), torch.randn_like(h0)
    with use_backend("triton"):
        base = run_with_grads(MODES["chunk"], q, k, v, g, h0, do, dht)
        monkeypatch.setenv("TILEFOLD_GLA_FWDH", "32/4/2")
        monkeypatch.setenv("TILEFOLD_GLA_DH", "128,8,3")
        other = run_with_grads(MODES["chunk"], q, k, v, g, h0, do, dht)
    for a, b in zip(base, other):
        assert rms_rel(b, a) <= 1e-6
