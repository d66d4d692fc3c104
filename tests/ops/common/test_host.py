"""The launchers' host-side integer helpers agree with the Triton functions they replace."""
import triton

from tilefold.ops.common.host import cdiv, next_pow2


def test_cdiv_matches_triton():
    assert all(cdiv(a, b) == triton.cdiv(a, b) for a in range(0, 600) for b in range(1, 130))


def test_next_pow2_matches_triton():
    for n in list(range(0, 5000)) + [2**20 - 1, 2**20, 2**20 + 1, 2**31 - 1]:
        assert next_pow2(n) == triton.next_power_of_2(n), n


def test_non_int_arguments():
    """numpy integers (no ``bit_length``) and torch SymInts (traced: stays symbolic) work as with Triton's."""
    import numpy as np
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx

    for t in (np.int32, np.int64):
        for n in (0, 1, 5, 16, 17, 1000):
            assert next_pow2(t(n)) == triton.next_power_of_2(n) and cdiv(t(n), 16) == triton.cdiv(n, 16)
    g = make_fx(lambda x: x.new_zeros(next_pow2(x.shape[0]) + cdiv(x.shape[0], 4)),
                tracing_mode="symbolic")(torch.ones(5))
    assert g(torch.ones(9)).shape == (16 + 3,)


def test_env_get_follows_os_environ(monkeypatch):
    """env_get reads what os.environ holds at each call (set, changed, deleted; non-ASCII values)"""
    from tilefold.ops.common.host import env_get
    monkeypatch.delenv("TILEFOLD_TEST_SWITCH", raising=False)
    assert env_get("TILEFOLD_TEST_SWITCH", "dflt") == "dflt"
    monkeypatch.setenv("TILEFOLD_TEST_SWITCH", "1")
    assert env_get("TILEFOLD_TEST_SWITCH", "dflt") == "1"
    monkeypatch.setenv("TILEFOLD_TEST_SWITCH", "é0")
    assert env_get("TILEFOLD_TEST_SWITCH", "dflt") == "é0"
    monkeypatch.delenv("TILEFOLD_TEST_SWITCH")
    assert env_get("TILEFOLD_TEST_SWITCH", "dflt") == "dflt"
