"""How fast can batch-1 decoding be on this CPU? The weight-streaming roofline beside what JAX and
PyTorch reach.

    python bench/bench_cpu_roofline.py                      # XTTS-v2 size: 30 layers, d 1024 (1.5 GB fp32)
    python bench/bench_cpu_roofline.py --layers 4 --rounds 3  # a quick look

A decode step at batch 1 multiplies one vector by every weight matrix of the model once, so its
time is bounded below by (bytes of weights) / (memory bandwidth). This script measures, interleaved
round by round (medians, machine load printed):

  ``copy``         numpy copying an array as large as the weights: the bandwidth the memory gives
                   (bytes read + bytes written)
  ``numpy f32``    the layers' vector-matrix products in numpy (its BLAS)
  ``jax f32``      the same under one ``jax.jit``, the layers unrolled over per-layer arrays, as our
                   decode step reads them
  ``torch f32``    the same in PyTorch eager (what coqui's CPU path runs), ``torch.set_num_threads`` = cores
  ``jax bf16``     bf16 weights, f32 accumulation, under one jit
  ``torch bf16``   bf16 weights in PyTorch (oneDNN's kernels, AMX/AVX512-BF16 where the CPU has them)

Each layer is one [d, 12 d] matrix, the weights of a GPT-2 block (qkv 3d + attention out d + MLP
4d + 4d, all with input width d after reshaping; the bytes are what matter). The implied decode
ceiling is (GB/s) / (GB of weights per token). PyTorch comes from the ``reference`` extra; without
it those rows are skipped.
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np
from benchlib import interleaved

from xtts_jax.errors import UserError, run_cli


def products(layers: int, d: int, seed: int = 0):
    """``{name: callable}`` each running one vector through every layer's [d, 12 d] matrix."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    w32 = rng.standard_normal((layers, d, 12 * d), dtype=np.float32) * 0.02
    x = rng.standard_normal(d, dtype=np.float32)
    fns = {}

    big = np.empty_like(w32)
    fns["copy"] = lambda: np.copyto(big, w32)

    def numpy_f32():
        out = 0.0
        for layer in w32:
            out += float((x @ layer)[0])
        return out

    fns["numpy f32"] = numpy_f32

    def products_of(weights, v):
        # one jit over a list of per-layer arrays, unrolled, as the decode step reads the layers
        # (Transformer.unstacked); lax.scan over one stacked array instead copied every layer's
        # slice out each iteration here (3.5x slower than numpy)
        return sum(jnp.dot(v.astype(w.dtype), w, preferred_element_type=jnp.float32)[0] for w in weights)

    run = jax.jit(products_of)
    j32, jx = [jnp.asarray(w) for w in w32], jnp.asarray(x)
    fns["jax f32"] = lambda: jax.block_until_ready(run(j32, jx))
    j16 = [w.astype(jnp.bfloat16) for w in j32]
    fns["jax bf16"] = lambda: jax.block_until_ready(run(j16, jx))
    try:
        import torch
    except ImportError:
        print("torch not installed (the reference extra): PyTorch rows skipped")
        return fns, w32.nbytes
    torch.set_num_threads(os.cpu_count() or 1)
    t32, tx = torch.from_numpy(w32), torch.from_numpy(x)
    t16, tx16 = t32.to(torch.bfloat16), tx.to(torch.bfloat16)

    def torch_run(weights, v):
        with torch.inference_mode():
            out = 0.0
            for layer in weights:
                out += float((v @ layer)[0])
            return out

    fns["torch f32"] = lambda: torch_run(t32, tx)
    fns["torch bf16"] = lambda: torch_run(t16, tx16)
    return fns, w32.nbytes


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    if args.layers < 1 or args.d < 8 or args.rounds < 1:
        raise UserError("--layers, --d and --rounds must be positive (--d at least 8)")
    fns, f32_bytes = products(args.layers, args.d)
    times, (load_before, load) = interleaved(fns, args.rounds)
    gb = f32_bytes / 1e9
    print(f"{args.layers} layers x [{args.d}, {12 * args.d}]: {gb:.2f} GB in float32; {os.cpu_count()} cores; "
          f"median of {args.rounds} interleaved rounds; load {load_before:.2f} before, {load:.2f} after")
    print("| what | ms | GB/s | decode ceiling at this size (tokens/s) |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        t = statistics.median(ts)
        # copy reads and writes the bytes once each; a product pass is one token's worth of weights
        moved = 2 * gb if name == "copy" else gb / (2 if "bf16" in name else 1)
        ceiling = moved / t / gb if name == "copy" else 1.0 / t
        print(f"| {name} | {1e3 * t:.1f} | {moved / t:.1f} | {ceiling:.1f} |")
    return 0


if __name__ == "__main__":
    main()
