"""Tune fla-core's autotuned GLA kernels on a fresh machine in a fraction of the serial time, so that
``python -m tilefold bench gla`` can time fla in the same run as tilefold.

fla 0.6's chunk_gla forward + backward autotunes hundreds of (tile, warps, stages) configs, one compile
after another: > 215 s on a fresh H200 (it never finished inside a device call). Here:
  1. ``--shards N`` worker processes each run the bench's fla calls with every autotuner restricted to its
     N-th share of the (pruned) configs and fla's result cache off: together they compile every config
     once into Triton's shared on-disk kernel cache; their timings are thrown away.
  2. This process then runs the same calls with fla untouched: its autotuner times every config on an
     otherwise idle GPU (the compiles are now cache hits) and, with FLA_CACHE_RESULTS=1 (fla's default),
     writes the winners to Triton's cache, where the bench process finds them.
So fla picks from its full config list by its own timing; only the compile work is spread over processes.
Calls: the bench's shapes (B8 T4096 and B2 T16384, H16, K=V=128, bf16, fwd+bwd) and its error-check shape
(B1 T512 H2, forward without grad), for chunk_gla and fused_recurrent_gla.
Run from the repo root with fla importable: python scripts/fla_warm.py --shards 14
"""
import os, subprocess, sys, time

SHAPES = [(8, 4096, 16, 128, 128), (2, 16384, 16, 128, 128)]
ERR_SHAPE = (1, 512, 2, 128, 128)


def calls():
    import torch
    from fla.ops.gla import chunk_gla, fused_recurrent_gla
    from tilefold.bench.gla import _inputs
    fns = {"chunk": lambda q, k, v, g: chunk_gla(q, k, v, g)[0],
           "fused_recurrent": lambda q, k, v, g: fused_recurrent_gla(q, k, v, gk=g)[0]}
    for name, fn in fns.items():
        t0 = time.time()
        with torch.no_grad():
            fn(*_inputs(*ERR_SHAPE, torch.bfloat16, "cuda", grad=False))
        for shape in SHAPES:
            q, k, v, g = _inputs(*shape, torch.bfloat16, "cuda", grad=True)
            fn(q, k, v, g).backward(torch.randn_like(v))
            del q, k, v, g
        torch.cuda.synchronize()
        yield name, time.time() - t0


def shard(i, n):
    from triton.runtime.autotuner import Autotuner
    orig = Autotuner.prune_configs

    def mine(self, *a, **kw):
        cs = orig(self, *a, **kw)
        return cs[i::n] or [cs[i % len(cs)]]
    Autotuner.prune_configs = mine
    for name, s in calls():
        print(f"[shard {i}/{n}] fla {name}: {s:.0f}s", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--shard"]:
        os.environ["FLA_CACHE_RESULTS"] = "0"
        shard(int(sys.argv[2]), int(sys.argv[3]))
        sys.exit(0)
    # --compile-only: step 1 alone (e.g. beside other work); --tune-only: step 2 alone (after it)
    n = int(sys.argv[sys.argv.index("--shards") + 1]) if "--shards" in sys.argv else 14
    t0 = time.time()
    if "--tune-only" in sys.argv:
        n = 0
    env = dict(os.environ, FLA_CACHE_RESULTS="0")
    procs = [subprocess.Popen([sys.executable, __file__, "--shard", str(i), str(n)], env=env) for i in range(n)]
    limit = float(os.environ.get("FLA_SHARD_S", "300"))
    rcs = []
    for p in procs:  # shards still compiling at the limit are stopped; the tuning below compiles the rest
        try:
            rcs.append(p.wait(timeout=max(1.0, limit - (time.time() - t0))))
        except subprocess.TimeoutExpired:
            p.kill()
            rcs.append("killed")
    print(f"[fla warm] {n} compile shards done in {time.time() - t0:.0f}s, rc {sorted(set(map(str, rcs)))}", flush=True)
    if "--compile-only" in sys.argv:
        sys.exit(0)
    os.environ.setdefault("FLA_CACHE_RESULTS", "1")
    for name, s in calls():
        print(f"[fla warm] fla {name} tuned in {s:.0f}s (total {time.time() - t0:.0f}s)", flush=True)
