"""Driver for ncu: the hd128 bf16 backward at B2 H16 S (argv[1]) causal (argv[2] == '1'), three calls
(ncu picks the kernel instance with --launch-skip / --launch-count)."""
import sys
import torch
import tilefold

S, causal = int(sys.argv[1]), sys.argv[2] == "1"
g = torch.Generator(device="cuda").manual_seed(0)
q, k, v = (torch.randn(2, S, 16, 128, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
           for _ in range(3))
o = tilefold.attention(q, k, v, causal=causal)
do = torch.randn_like(o)
for _ in range(3):
    torch.autograd.grad(o, (q, k, v), do, retain_graph=True)
torch.cuda.synchronize()
