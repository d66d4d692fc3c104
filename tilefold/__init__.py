"""tilefold: IO-aware attention kernels for PyTorch, written in Triton."""
from .ops.attention.interface import attention, varlen_attention
from .ops.common.dispatch import use_backend

__version__ = "0.1.0"

__all__ = ["attention", "varlen_attention", "use_backend", "__version__"]
