"""tilefold: IO-aware attention kernels for PyTorch, written in Triton."""
from .ops.attention.interface import attention, varlen_attention
from .ops.common.dispatch import use_backend
from .ops.decode import attention_with_kvcache, partial_attention
from .ops.merge import merge_state, merge_states
from . import gla, nn, state  # noqa: E402  (namespaces: tilefold.gla, tilefold.nn, tilefold.state)

__version__ = "0.1.0"

__all__ = ["attention", "varlen_attention", "attention_with_kvcache", "merge_state", "merge_states", "partial_attention", "use_backend", "gla", "nn", "state", "__version__"]
