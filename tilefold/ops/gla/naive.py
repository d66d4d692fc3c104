"""The reference: GLA as the plain recurrence, one step at a time, in float64. Tests import it; nothing
else does.  S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,  o_t = scale * q_t S_t  (no gate floor here)."""
from __future__ import annotations

import torch


def naive_recurrent_gla(q, k, v, g, scale=None, initial_state=None, output_final_state=False,
                        cu_seqlens=None, dtype=torch.float64):
    """Same signature and shapes as ``tilefold.gla.fused_recurrent_gla``; differentiable; computes in
    ``dtype``. Returns (o in ``dtype``, final state [N, H, K, V] in ``dtype`` or None)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    q, k, v, g = (x.to(dtype) for x in (q, k, v, g))
    if cu_seqlens is None:
        bounds = [(b, 0, T) for b in range(B)]
    else:
        cu = cu_seqlens.tolist()
        bounds = [(0, cu[i], cu[i + 1]) for i in range(len(cu) - 1)]
    outs, finals = [], []
    for n, (b, s, e) in enumerate(bounds):
        h = q.new_zeros(H, K, V) if initial_state is None else initial_state[n].to(dtype)
        for t in range(s, e):
            h = h * g[b, t].exp()[..., None] + k[b, t][..., None] * v[b, t][:, None, :]
            outs.append((b, t, scale * torch.einsum("hk,hkv->hv", q[b, t], h)))
        finals.append(h)
    o = q.new_zeros(B, T, H, V)
    if outs:
        idx_b = torch.tensor([x[0] for x in outs])
        idx_t = torch.tensor([x[1] for x in outs])
        o = o.index_put((idx_b, idx_t), torch.stack([x[2] for x in outs]))
    return o, (torch.stack(finals) if output_final_state else None)
