"""chunk_gla's serial kernels (fwd_h, bwd_dh) and their small-grid config (chunk._serial_cfg): on a GPU
whose grid at the default value block would fill fewer than half the SMs, fwd_h and bwd_dh_v5 take
SMALL_NH_CFG (value blocks of 32). The rule on a pretend H200 (the interpreter switched off, the SM count
patched), its shared-memory budget, the SM count per device index, and the 32-column tiles' numerics under
the interpreter (through the env overrides, the only way to reach them on CPU tensors)."""
import types

import pytest
import torch

from tilefold.gla import chunk_gla
from tilefold.ops.common.dispatch import use_backend
from tilefold.ops.gla import chunk as C
from tilefold.ops.gla.chunk_bwd import bwd_variant

from gla_helpers import TOL, check_all, make_inputs, reference, run_with_grads

CUDA = torch.device("cuda", 0)
BF16 = 2  # element size


@pytest.fixture
def h200(monkeypatch):
    """A CUDA launch as _serial_cfg sees it on an H200 (132 SMs), no env overrides."""
    monkeypatch.setattr(C, "interpreter_enabled", lambda: False)
    monkeypatch.setattr(C, "_sm_count", lambda device: 132)
    for name in ("TILEFOLD_GLA_FWDH", "TILEFOLD_GLA_DH"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _cfg(kernel, NH, V=128, K=128, es=BF16, device=CUDA):
    BT = C.chunk_size(K, V)
    return C._serial_cfg(kernel, es, C._bk(K), V, BT, NH, device)


@pytest.mark.parametrize("kernel,NH,V,expect", [
    # the measured shapes: B 2 x H 16 walks small tiles, B 8 x H 16 keeps the large ones
    ("fwd_h", 32, 128, (32, 4, 2)), ("fwd_h", 128, 128, (128, 8, 3)),
    ("bwd_dh_v5", 32, 128, (32, 4, 3)), ("bwd_dh_v5", 128, 128, (64, 4, 2)),
    # "fewer than half" of 132: fwd_h one block of 128 per (sequence, head), bwd_dh_v5 two blocks of 64
    ("fwd_h", 65, 128, (32, 4, 2)), ("fwd_h", 66, 128, (128, 8, 3)),
    ("bwd_dh_v5", 32, 128, (32, 4, 3)), ("bwd_dh_v5", 33, 128, (64, 4, 2)),
    ("bwd_dh_v5", 65, 64, (32, 4, 3)), ("bwd_dh_v5", 66, 64, (64, 4, 2)),
    # value blocks never wider than V's power of two: V 16 stays one block of 16; V 200 counts 2 blocks
    ("fwd_h", 1, 16, (16, 4, 2)), ("bwd_dh_v5", 1, 16, (16, 4, 3)),
    ("fwd_h", 32, 200, (32, 4, 2)), ("fwd_h", 33, 200, (128, 8, 3)),
])
def test_small_grid_rule(h200, kernel, NH, V, expect):
    assert _cfg(kernel, NH, V=V) == expect


def test_small_grid_rule_scope(h200):
    """Only fwd_h and bwd_dh_v5 switch, only for CUDA launches outside the interpreter, and the env
    overrides still win."""
    big = _cfg("fwd_h", None)
    assert _cfg("fwd_h", 1) != big
    assert _cfg("bwd_dh", 1) == _cfg("bwd_dh", None) == (128, 8, 3)  # v4's bwd_dh: never switches
    assert _cfg("fwd_h", 1, device=torch.device("cpu")) == big
    assert C._serial_cfg("fwd_h", BF16, 128, 128, 64) == big  # no grid size given
    h200.setenv("TILEFOLD_GLA_FWDH", "64,8,1")
    h200.setenv("TILEFOLD_GLA_DH", "128/2/1")
    assert _cfg("fwd_h", 1) == (64, 8, 1)
    assert _cfg("bwd_dh_v5", 1) == (128, 2, 1)
    h200.delenv("TILEFOLD_GLA_FWDH")
    h200.setattr(C, "interpreter_enabled", lambda: True)
    assert _cfg("fwd_h", 1) == big


def test_odd_sm_count(h200):
    h200.setattr(C, "_sm_count", lambda device: 133)  # half is 66 still
    assert _cfg("fwd_h", 65)[0] == 32 and _cfg("fwd_h", 66)[0] == 128


def test_small_cfg_within_stage_budget(h200):
    """The small-grid stage counts stay within what _stages allows for their tiles (<= 200 KB of [BT, BK]
    input + fp32 gate tiles and [BT, BV] tiles in flight; sm_90 has 227 KB), wherever they can run:
    fwd_h for every input, bwd_dh_v5 where the backward variant is v5."""
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for K in (16, 64, 100, 128, 256):
            for V in (16, 64, 128, 256):
                es, BK, BT = dtype.itemsize, C._bk(K), C.chunk_size(K, V)
                kernels = ["fwd_h"] + (["bwd_dh_v5"] if bwd_variant(dtype, K, V, "cuda") != "v4" else [])
                for kernel in kernels:
                    BV, nw, ns = _cfg(kernel, 1, V=V, K=K, es=es)
                    budget = C._stages(es, BK, BV, BT)
                    assert BV <= 32 and ns <= budget, (dtype, K, V, kernel, BV, ns, budget)


def test_sm_count_per_device_index(monkeypatch):
    """device 'cuda' (no index) is the current device; each index is asked once and cached."""
    sms, asked = {0: 132, 1: 78}, []

    def props(idx):
        asked.append(idx)
        return types.SimpleNamespace(multi_processor_count=sms[idx])

    monkeypatch.setattr(C, "_SMS", {})
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", props)
    assert C._sm_count(torch.device("cuda")) == 78
    assert C._sm_count(torch.device("cuda", 0)) == 132
    assert C._sm_count(torch.device("cuda", 1)) == 78
    assert C._sm_count(torch.device("cuda", 0)) == 132
    assert asked == [1, 0]


def test_small_tiles_interpreter(monkeypatch):
    """fwd_h 32/4/2 and bwd_dh_v5 32/4/3 (SMALL_NH_CFG, through the env overrides) on packed sequences
    with several chunks, V = 80 in three value blocks (the last partial): every output and gradient
    against the fp64 recurrence."""
    fh, dh = C.SMALL_NH_CFG["fwd_h"], C.SMALL_NH_CFG["bwd_dh_v5"]
    monkeypatch.setenv("TILEFOLD_GLA_FWDH", ",".join(map(str, fh)))
    monkeypatch.setenv("TILEFOLD_GLA_DH", ",".join(map(str, dh)))
    monkeypatch.delenv("TILEFOLD_GLA_BWD", raising=False)  # v5 (fp32 under the interpreter)
    torch.manual_seed(41)
    lens = [0, 70, 1, 33]
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32)
    q, k, v, g, h0 = make_inputs(1, sum(lens), 2, 48, 80, n_states=len(lens))
    do, dht = torch.randn_like(v), torch.randn_like(h0)
    seen = []
    serial = C._serial_cfg
    monkeypatch.setattr(C, "_serial_cfg", lambda kernel, *a: seen.append((kernel, serial(kernel, *a))) or seen[-1][1])
    with use_backend("triton"):
        out = run_with_grads(chunk_gla, q, k, v, g, h0, do, dht, cu_seqlens=cu)
    assert dict(seen) == {"fwd_h": (32,) + fh[1:], "bwd_dh_v5": (32,) + dh[1:]}, seen
    check_all(out, reference(q, k, v, g, h0, do, dht, cu_seqlens=cu), TOL[torch.float32], "small tiles")
