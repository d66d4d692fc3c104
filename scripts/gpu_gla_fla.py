"""Same-process chunk_gla timing of tilefold and fla-core when device time is short: tilefold's kernels
compile in a background process (CPU) while fla's autotuner runs here, then both are timed alternately
(fwd, fwd+bwd; B8 T4096 H16 K=V=128 bf16, inputs like ``python -m tilefold bench gla``). Records in the
DESIGN §6 format go to $OUT/gla-fla.json after every measurement (a run cut short keeps them).
Needs fla-core importable (scripts/gpu_call9.sh shows the wheel install; carry .whl)."""
import json, os, subprocess, sys, time
import torch
from tilefold.bench.core import base_record, bench_ms, tflops
from tilefold.bench.gla import _inputs

OUT = os.environ.get("OUT", "/tmp")
B, T, H, K = 8, 4096, 16, 128
WARM = f"""
import torch
from tilefold.bench.gla import _inputs
from tilefold.gla import chunk_gla
q, k, v, g = _inputs({B}, {T}, {H}, {K}, {K}, torch.bfloat16, 'cuda', grad=True)
chunk_gla(q, k, v, g)[0].backward(torch.randn_like(v)); torch.cuda.synchronize(); print('tilefold compiled')
"""


def inputs():  # the bench's own inputs (python -m tilefold bench gla)
    return _inputs(B, T, H, K, K, torch.bfloat16, "cuda", grad=True)


if __name__ == "__main__":
    t0 = time.time()
    bg = subprocess.Popen([sys.executable, "-c", WARM])
    from fla.ops.gla import chunk_gla as fla_chunk
    from tilefold.gla import chunk_gla as tf_chunk
    provs = [("fla", lambda q, k, v, g: fla_chunk(q, k, v, g)[0]), ("tilefold", lambda q, k, v, g: tf_chunk(q, k, v, g)[0])]
    q, k, v, g = inputs()
    provs[0][1](q, k, v, g).backward(torch.randn_like(v)); torch.cuda.synchronize()
    print(f"fla tuned at {time.time() - t0:.0f}s", flush=True)
    bg.wait()
    print(f"tilefold compiled at {time.time() - t0:.0f}s", flush=True)
    recs, fl = [], 4.0 * B * T * H * K * K
    for mode in ("fwd+bwd", "fwd"):
        for name, fn in provs:
            q, k, v, g = inputs()
            do = torch.randn_like(v)
            call = (lambda: fn(q, k, v, g)) if mode == "fwd" else (lambda: fn(q, k, v, g).backward(do))
            ms = bench_ms(call)
            recs.append(base_record("gla", name, mode, torch.bfloat16, mode_name="chunk", batch=B, heads=H, headdim=K,
                                    headdim_v=K, seqlen=T, ms=ms, tflops=tflops(fl * (3.5 if mode != "fwd" else 1), ms)))
            print(f"{name:9s} chunk {mode:8s} {ms:.3f} ms", flush=True)
            json.dump(recs, open(os.path.join(OUT, "gla-fla.json"), "w"), indent=1)
