"""Split-KV / decode attention and partial attention in global positions."""
from .partial import partial_attention  # noqa: F401
from .splitkv import choose_num_splits, split_kv_attention  # noqa: F401
from .kvcache import attention_with_kvcache  # noqa: F401
