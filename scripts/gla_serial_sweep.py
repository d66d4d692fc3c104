"""Chunk GLA's serial kernels (fwd_h, bwd_dh_v5) at small and large batch: chunk_gla fwd and fwd+bwd timed
under several (BV, warps, stages) of TILEFOLD_GLA_FWDH / TILEFOLD_GLA_DH, in one process (same run), beside
the shipped choice (empty: chunk._serial_cfg's SM-filling rule). Inputs as python -m tilefold bench gla.
Records (JSON lines) to $OUT/gla-serial-sweep.jsonl.   python scripts/gla_serial_sweep.py"""
import json, os, time
import torch
from tilefold.bench.core import bench_ms
from tilefold.bench.gla import _inputs
from tilefold.gla import chunk_gla

OUT = os.environ.get("OUT", "/tmp")
SHAPES = [(2, 16384, 16, 128, 128), (8, 4096, 16, 128, 128)]
# (fwd_h, bwd_dh_v5); "" = shipped rule
CANDS = [("", ""), ("128/8/3", "64/4/2"), ("64/8/3", "64/4/2"), ("64/4/3", "32/4/2"), ("32/4/3", "32/4/2"),
         ("32/8/3", "32/8/2"), ("32/4/2", "32/4/3"), ("16/4/3", "16/4/2")]
if __name__ == "__main__":
    path = os.path.join(OUT, "gla-serial-sweep.jsonl")
    for B, T, H, K, V in SHAPES:
        for fh, dh in CANDS:
            for name, val in (("TILEFOLD_GLA_FWDH", fh), ("TILEFOLD_GLA_DH", dh)):
                if val:
                    os.environ[name] = val
                else:
                    os.environ.pop(name, None)
            rec = dict(batch=B, seqlen=T, heads=H, fwdh=fh or "shipped", dh=dh or "shipped")
            try:
                q, k, v, g = _inputs(B, T, H, K, V, torch.bfloat16, "cuda", grad=True)
                do = torch.randn_like(v)
                t0 = time.time()
                chunk_gla(q, k, v, g)[0].backward(do)
                torch.cuda.synchronize()
                rec["first_call_s"] = round(time.time() - t0, 1)
                rec["fwd_ms"] = bench_ms(lambda: chunk_gla(q, k, v, g))
                rec["fwdbwd_ms"] = bench_ms(lambda: chunk_gla(q, k, v, g)[0].backward(do))
            except Exception as e:  # noqa: BLE001
                rec["error"] = f"{type(e).__name__}: {e}"[:300]
            print(json.dumps(rec), flush=True)
            with open(path, "a") as f:
                f.write(json.dumps(rec) + "\n")
