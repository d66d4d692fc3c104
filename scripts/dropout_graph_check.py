"""Device call 80 (2026-12-04, eighth session): what a dropout attention call does under CUDA graph capture (the seed /
offset come from torch's CUDA generator on the host; a captured call would replay one mask forever unless something
refuses). Prints the outcome."""
import torch

import tilefold

q, k, v = (torch.randn(1, 256, 4, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
tilefold.attention(q, k, v, dropout_p=0.1)  # compile outside the capture
torch.cuda.synchronize()
s = torch.cuda.Stream()
s.wait_stream(torch.cuda.current_stream())
g = torch.cuda.CUDAGraph()
try:
    with torch.cuda.stream(s), torch.cuda.graph(g):
        out = tilefold.attention(q, k, v, dropout_p=0.1)
    g.replay()
    a = out.clone()
    g.replay()
    print("captured; two replays", "equal (one mask repeated)" if torch.equal(a, out) else "differ")
except Exception as e:  # noqa: BLE001
    print("refused:", type(e).__name__, str(e)[:300])
