"""Gated Linear Attention (``tilefold.gla``): see ``tilefold.ops.gla.interface`` for the modes."""
from .ops.gla.interface import chunk_gla, fused_chunk_gla, fused_recurrent_gla

__all__ = ["fused_recurrent_gla", "chunk_gla", "fused_chunk_gla"]
