"""Fixtures of the decode tests."""
import pytest

from tilefold.ops.decode import kernel as K


@pytest.fixture
def gpu_policy(monkeypatch):
    """decode_config / the split choice as on an sm_90 GPU with 132 SMs, from CPU tensors (no launch); caches cleared
    before and after (they are keyed by device, not by the patched functions)."""
    from tilefold.ops.decode import splitkv as SK
    monkeypatch.setattr(K, "interpreter_enabled", lambda: False)
    monkeypatch.setattr(SK, "interpreter_enabled", lambda: False)
    monkeypatch.setattr(SK, "_num_sms", lambda dev: 132)
    for f in (K.decode_config.cache_clear, SK._choose_cached.cache_clear):
        f()
    yield SK
    for f in (K.decode_config.cache_clear, SK._choose_cached.cache_clear):
        f()
