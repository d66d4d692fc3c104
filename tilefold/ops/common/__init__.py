"""Pieces shared by more than one op: the fold in Triton, masks, dispatch, validation helpers."""
