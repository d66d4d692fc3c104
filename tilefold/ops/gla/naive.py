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
    # unbind once: indexing q[b, t] inside the loop would make autograd build a full-size gradient per step
    steps = [list(zip(*(x[b].unbind(0) for x in (q, k, v, g)))) for b in range(B)]
    rows = [[] for _ in range(B)]
    finals = []
    for n, (b, s, e) in enumerate(bounds):
        h = q.new_zeros(H, K, V) if initial_state is None else initial_state[n].to(dtype)
        for t in range(s, e):
            qt, kt, vt, gt = steps[b][t]
            h = h * gt.exp()[..., None] + kt[..., None] * vt[:, None, :]
            rows[b].append(scale * torch.einsum("hk,hkv->hv", qt, h))
        finals.append(h)
    o = torch.stack([torch.stack(r, 0) if r else q.new_zeros(0, H, V) for r in rows], 0) if B else q.new_zeros(0, T, H, V)
    final = (torch.stack(finals) if finals else q.new_zeros(0, H, K, V)) if output_final_state else None
    return o, final
