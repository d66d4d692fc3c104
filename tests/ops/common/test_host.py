"""The launchers' host-side integer helpers agree with the Triton functions they replace."""
import triton

from tilefold.ops.common.host import cdiv, next_pow2


def test_cdiv_matches_triton():
    assert all(cdiv(a, b) == triton.cdiv(a, b) for a in range(0, 600) for b in range(1, 130))


def test_next_pow2_matches_triton():
    for n in list(range(0, 5000)) + [2**20 - 1, 2**20, 2**20 + 1, 2**31 - 1]:
        assert next_pow2(n) == triton.next_power_of_2(n), n
