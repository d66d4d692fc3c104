"""``GatedLinearAttention``: the GLA layer (Yang et al., 2023) on tilefold's GLA ops.

x -> q, k, v projections; a low-rank forget gate g = logsigmoid(W2 W1 x) / gate_logit_normalizer per key
dimension; o = GLA(q, k, v, g) per head; o = RMSNorm(o) * silu(W_g x) (or RMSNorm(o) without the output
gate); out = W_o o.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.common.validate import _validate_int, _validate_positive
from ..ops.gla.interface import chunk_gla, fused_chunk_gla, fused_recurrent_gla

_MODES = {"chunk": chunk_gla, "fused_chunk": fused_chunk_gla, "fused_recurrent": fused_recurrent_gla}


class GatedLinearAttention(nn.Module):
    """Gated linear attention layer.

    Args:
        hidden_size: model width.
        num_heads: heads; key_dim = hidden_size * expand_k and value_dim = hidden_size * expand_v must
            both divide by it.
        expand_k, expand_v: key / value widths relative to hidden_size.
        mode: "chunk" (training default), "fused_chunk" or "fused_recurrent"; one-token steps always
            use fused_recurrent.
        gate_logit_normalizer: the gate is logsigmoid(.) / gate_logit_normalizer.
        gate_low_rank_dim: rank of the gate projection.
        use_output_gate: multiply the normalized output by silu(W_g x).
        norm_eps: RMSNorm epsilon.
        clamp_min: optional lower bound on the gate (None: none).

    ``forward(x, attention_mask=None, past_state=None, use_cache=False) -> (out, state or None)``:
    x [B, T, hidden_size]; attention_mask [B, T] of 0/1 (1 = token, 0 = padding; any positions): each
    row's tokens become one packed sequence (cu_seqlens), padding outputs are 0 and padding never touches
    the state. past_state [B, H, K, V] float32 (from a previous call with use_cache=True) continues each
    row; with use_cache the call returns the state after its last token.
    """

    def __init__(self, hidden_size: int = 1024, num_heads: int = 4, expand_k: float = 0.5,
                 expand_v: float = 1.0, mode: str = "chunk", gate_logit_normalizer: float = 16,
                 gate_low_rank_dim: int = 16, use_output_gate: bool = True, norm_eps: float = 1e-5,
                 clamp_min: float | None = None, device=None, dtype=None):
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"mode: expected one of {sorted(_MODES)}, got {mode!r}")
        for name, x in (("hidden_size", hidden_size), ("num_heads", num_heads),
                        ("gate_low_rank_dim", gate_low_rank_dim)):
            _validate_int(name, x, 1)
        for name, x in (("expand_k", expand_k), ("expand_v", expand_v),
                        ("gate_logit_normalizer", gate_logit_normalizer), ("norm_eps", norm_eps)):
            _validate_positive(name, x)
        key_dim, value_dim = int(hidden_size * expand_k), int(hidden_size * expand_v)
        if key_dim < 1 or value_dim < 1:
            raise ValueError(f"expand_k / expand_v: expected key and value widths >= 1, got {key_dim} and {value_dim} "
                             f"(hidden_size={hidden_size})")
        if key_dim % num_heads or value_dim % num_heads:
            raise ValueError(f"num_heads: expected a divisor of key_dim={key_dim} and value_dim={value_dim}, "
                             f"got {num_heads}")
        if max(key_dim, value_dim) // num_heads > 256:
            raise ValueError(f"num_heads: head dims key_dim / num_heads = {key_dim // num_heads} and value_dim / "
                             f"num_heads = {value_dim // num_heads} must be <= 256 (the GLA kernels' limit)")
        self.hidden_size, self.num_heads, self.mode = hidden_size, num_heads, mode
        self.key_dim, self.value_dim = key_dim, value_dim
        self.head_k_dim, self.head_v_dim = key_dim // num_heads, value_dim // num_heads
        self.gate_logit_normalizer = gate_logit_normalizer
        self.use_output_gate, self.norm_eps, self.clamp_min = use_output_gate, norm_eps, clamp_min
        kw = dict(device=device, dtype=dtype)
        self.q_proj = nn.Linear(hidden_size, key_dim, bias=False, **kw)
        self.k_proj = nn.Linear(hidden_size, key_dim, bias=False, **kw)
        self.v_proj = nn.Linear(hidden_size, value_dim, bias=False, **kw)
        self.g_proj = nn.Linear(hidden_size, value_dim, bias=False, **kw) if use_output_gate else None
        self.gk_proj = nn.Sequential(nn.Linear(hidden_size, gate_low_rank_dim, bias=False, **kw),
                                     nn.Linear(gate_low_rank_dim, key_dim, bias=True, **kw))
        self.g_norm_weight = nn.Parameter(torch.ones(self.head_v_dim, **kw))
        self.o_proj = nn.Linear(value_dim, hidden_size, bias=False, **kw)

    def _validate(self, x, attention_mask, past_state):
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.hidden_size:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected shape [B, T, {self.hidden_size}], got {got}")
        B, T = x.shape[:2]
        if attention_mask is not None:
            if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (B, T):
                got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else attention_mask
                raise ValueError(f"attention_mask: expected shape {(B, T)} of 0/1, got {got}")
            if not ((attention_mask == 0) | (attention_mask == 1)).all():
                raise ValueError("attention_mask: expected only 0/1 values (a padding mask), got others")
        if past_state is not None:
            want = (B, self.num_heads, self.head_k_dim, self.head_v_dim)
            if not isinstance(past_state, torch.Tensor) or tuple(past_state.shape) != want:
                got = tuple(past_state.shape) if isinstance(past_state, torch.Tensor) else past_state
                raise ValueError(f"past_state: expected shape {want} [B, H, K, V], got {got}")
            if past_state.dtype != torch.float32:  # the kernels' state dtype (named here, not as initial_state)
                raise ValueError(f"past_state: expected dtype torch.float32, got {past_state.dtype}")
        w = self.q_proj.weight
        if x.device != w.device or (x.dtype != w.dtype and not torch.is_autocast_enabled(x.device.type)):
            raise ValueError(f"x: expected dtype {w.dtype} on {w.device} (the layer's parameters), got {x.dtype} on "
                             f"{x.device}")

    def forward(self, x, attention_mask=None, past_state=None, use_cache=False):
        self._validate(x, attention_mask, past_state)
        B, T, _ = x.shape
        H, Dk, Dv = self.num_heads, self.head_k_dim, self.head_v_dim
        q = self.q_proj(x).view(B, T, H, Dk)
        k = self.k_proj(x).view(B, T, H, Dk)
        v = self.v_proj(x).view(B, T, H, Dv)
        g = F.logsigmoid(self.gk_proj(x).float()) / self.gate_logit_normalizer
        if self.clamp_min is not None:
            g = g.clamp_min(self.clamp_min)
        g = g.view(B, T, H, Dk)
        fn = fused_recurrent_gla if T == 1 else _MODES[self.mode]
        want_state = use_cache
        if attention_mask is not None and not bool(attention_mask.all()):
            keep = attention_mask.reshape(-1).bool()
            idx = keep.nonzero().squeeze(-1)
            lens = attention_mask.sum(-1).to(torch.int32)
            cu = torch.cat([lens.new_zeros(1), lens.cumsum(0, dtype=torch.int32)])
            packed = [t.reshape(B * T, H, -1)[idx].unsqueeze(0) for t in (q, k, v, g)]
            o, state = fn(*packed, initial_state=past_state, output_final_state=want_state, cu_seqlens=cu)
            o = o.new_zeros(B * T, H, Dv).index_put((idx,), o[0]).view(B, T, H, Dv)
        else:
            o, state = fn(q, k, v, g, initial_state=past_state, output_final_state=want_state)
        of = o.float()
        o = (of * torch.rsqrt(of.pow(2).mean(-1, keepdim=True) + self.norm_eps)).to(x.dtype) * self.g_norm_weight
        if self.g_proj is not None:
            o = o * F.silu(self.g_proj(x).view(B, T, H, Dv))
        out = self.o_proj(o.reshape(B, T, self.value_dim))
        return out, (state if use_cache else None)
