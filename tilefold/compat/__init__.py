"""Drop-in names of other libraries: ``tilefold.compat.flash_attn_interface``."""
