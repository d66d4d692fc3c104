
from .gla import GatedLinearAttention
