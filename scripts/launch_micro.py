"""Host cost of one Gluon forward launch, taken apart (device call 43, 2026-12-04, fourth session).

B2 H16 S1024 hd128 bf16 (the 1k case of small_seq_profile.py). Host µs per call (a loop of N calls, no sync inside;
the GPU work of each call is shorter than its host time, so the launch queue never fills):
  full        forward_sm90.attention_fwd_sm90 (plan lookup, descriptors, out / lse allocation, launch)
  cache.run   LaunchCache.launch with the arguments prepared (the raw path when RAW_LAUNCH)
  ck.run      CompiledKernel.run (Triton's launcher wrapper: encodes the 3 descriptors every call)
  raw         _RawLaunch (the launcher's C entry, encoded descriptors cached)
  encode      make_tensordesc_arg of the 3 descriptors (cuTensorMapEncodeTiled and its Python wrapper)
  empty2      the two torch.empty of out / lse
  noop        a 1-element torch add (the host's floor for one CUDA launch through torch)
  sdpa        SDPA-flash forward, same shape, no grad
Then one training step's pieces at the same shape: fwd+bwd with grad, through tilefold.attention (host loop).
Writes $OUT/launch-micro.json."""
import json
import os

import torch

import tilefold
from tilefold.ops.attention import forward_sm90 as F
from tilefold.ops.common import launch

from bench_timing import host_us


def per_call(fn, n=300, warm=20):
    return host_us(fn, n, warm, digits=2)


def main():
    B, S, H, D = 2, 1024, 16, 128
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3))
    scale = D ** -0.5
    res = {}
    call = lambda: F.attention_fwd_sm90(q, k, v, softmax_scale=scale, window=(-1, -1))  # noqa: E731
    call()
    res["full"] = per_call(call)
    key = next(iter(F._FWD_PLANS))
    plan = F._FWD_PLANS[key]
    descs = [launch.plain_descriptor(F.TensorDescriptor, t, *d) for t, d in zip((q, k, v), plan.descs)]
    out = torch.empty(plan.out_shape, device="cuda", dtype=q.dtype)
    lse = torch.empty(plan.lse_shape, device="cuda", dtype=torch.float32)
    from tilefold.ops.common.philox import dropout_threshold
    drop = (0, 0, 0, dropout_threshold(0.0), 1.0)
    args = (descs[0], descs[1], descs[2], out, lse) + plan.ints + drop
    lkey = (key,) + tuple(launch.int_class(x) for x in drop[:4])
    cache = F._FWD_LAUNCH
    res["cache.run"] = per_call(lambda: cache.launch(lkey, plan.grid, args, plan.consts, num_warps=4))
    (ck, tail, raw), = [e for kk, e in cache.kernels.items() if kk[1] == lkey]
    full = args + tail
    stream = launch._raw_stream(torch.cuda.current_device())
    res["ck.run"] = per_call(lambda: ck.run(plan.grid[0], plan.grid[1], plan.grid[2], stream, ck.function,
                                           ck.packed_metadata, None, None, None, *full))
    res["raw_available"] = raw is not None
    if raw is not None:
        res["raw"] = per_call(lambda: raw(plan.grid, stream, full))
        res["raw_hits"] = raw.hits
        res["encode"] = per_call(lambda: [raw.encode(d, m) for d, m in zip(descs, raw.metas)])
    res["global_scratch"] = ck.run.global_scratch_size if hasattr(ck.run, "global_scratch_size") else None
    res["empty2"] = per_call(lambda: (torch.empty(plan.out_shape, device="cuda", dtype=q.dtype),
                                      torch.empty(plan.lse_shape, device="cuda", dtype=torch.float32)))
    x = torch.ones(1, device="cuda")
    res["noop"] = per_call(lambda: x.add(1))
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        res["sdpa"] = per_call(lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt))
    # a training step: fwd + bwd with grads, direct launches on / raw launches on or off
    qg, kg, vg = (t.detach().clone().requires_grad_() for t in (q, k, v))
    dout = torch.randn_like(q)

    def step():
        o = tilefold.attention(qg, kg, vg)
        torch.autograd.grad(o, (qg, kg, vg), dout)

    for label, raw_on in (("step_raw", True), ("step_noraw", False), ("step_raw2", True)):
        launch.RAW_LAUNCH = raw_on
        for c in [F._FWD_LAUNCH, *__import__("tilefold.ops.attention.backward_sm90", fromlist=["x"])._LAUNCHES.values()]:
            c.clear()
        from tilefold.ops.attention import backward as bw
        bw._PRE_LAUNCH.clear()
        res[label] = per_call(step, n=100)

    def fwd_grad():
        tilefold.attention(qg, kg, vg)

    res["fwd_grad"] = per_call(fwd_grad)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        qs, ks, vs = (t.detach().transpose(1, 2).clone().requires_grad_() for t in (q, k, v))
        dos = dout.transpose(1, 2)

        def sdpa_step():
            o = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs)
            torch.autograd.grad(o, (qs, ks, vs), dos)

        res["sdpa_step"] = per_call(sdpa_step, n=100)
    print(json.dumps(res, indent=1))
    out_dir = os.environ.get("OUT")
    if out_dir:
        with open(os.path.join(out_dir, "launch-micro.json"), "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
