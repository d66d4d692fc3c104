import pytest

from tilefold.ops.gla import utils


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    """Every output buffer the kernels allocate starts as NaN: an unwritten element fails the test."""
    monkeypatch.setattr(utils, "POISON", True)
    yield
