"""Merge of attention states (the ⊕ of DESIGN.md §1) for the public layouts."""
from .interface import merge_state, merge_states  # noqa: F401
