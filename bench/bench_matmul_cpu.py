"""The bare matrix products of a training step, XLA's CPU kernels against PyTorch's.

    python bench/bench_matmul_cpu.py                 # the demo-width GPT's products at batch 32 x T 256
    python bench/bench_matmul_cpu.py --rows 2048 --rounds 3

A training step of a GPT spends most of its time in three forms of product per weight ``w [K, N]``:
the forward ``x @ w`` (``x [M, K]``), the input gradient ``g @ w.T`` and the weight gradient
``x.T @ g`` (``g [M, N]``). This script times each form over the layers of one block plus the output
head (the shapes of the 6-layer, d-192 GPT the default model's generator uses), in float32 and in
bfloat16 (float32 accumulation), once under ``jax.jit`` per form and once in PyTorch (2 threads:
one per core), interleaved round by round: medians, GFLOP/s, machine load printed. It answers
whether the float32 training step's gap to PyTorch eager lies in the kernels themselves (issue 23).
PyTorch comes from the ``reference`` extra; without it those rows are skipped.
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np
from benchlib import interleaved

from xtts_jax.errors import UserError, run_cli

FORMS = ("x @ w", "g @ w.T", "x.T @ g")


def layer_shapes(d: int, vocab: int) -> list[tuple[int, int]]:
    """``[(K, N)]`` of one GPT-2 block (qkv, attention out, MLP in, MLP out) and the output head."""
    return [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d), (d, vocab)]


def products(rows: int, shapes: list[tuple[int, int]], seed: int = 0):
    """``{(library, dtype, form): callable}``, each running one form over every shape."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    data = [(rng.standard_normal((rows, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32),
             rng.standard_normal((rows, n), dtype=np.float32)) for k, n in shapes]
    fns = {}
    jit_forms = {
        "x @ w": jax.jit(lambda xs, ws, gs: [jnp.dot(x, w, preferred_element_type=jnp.float32) for x, w in zip(xs, ws)]),
        "g @ w.T": jax.jit(lambda xs, ws, gs: [jnp.dot(g, w.T, preferred_element_type=jnp.float32) for g, w in zip(gs, ws)]),
        "x.T @ g": jax.jit(lambda xs, ws, gs: [jnp.dot(x.T, g, preferred_element_type=jnp.float32) for x, g in zip(xs, gs)]),
    }
    for dtype in ("float32", "bfloat16"):
        xs, ws, gs = ([jnp.asarray(a[i], dtype=dtype) for a in data] for i in range(3))
        for form, fn in jit_forms.items():
            fns[("jax", dtype, form)] = (lambda fn=fn, xs=xs, ws=ws, gs=gs: jax.block_until_ready(fn(xs, ws, gs)))
    try:
        import torch
    except ImportError:
        print("torch not installed (the reference extra): PyTorch rows skipped")
        return fns
    torch.set_num_threads(os.cpu_count() or 1)
    torch_forms = {"x @ w": lambda x, w, g: x @ w, "g @ w.T": lambda x, w, g: g @ w.T,
                   "x.T @ g": lambda x, w, g: x.T @ g}
    for dtype, tdtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        tdata = [tuple(torch.from_numpy(a).to(tdtype) for a in triple) for triple in data]
        for form, op in torch_forms.items():
            def run(op=op, tdata=tdata):
                with torch.inference_mode():
                    return [op(*triple) for triple in tdata]
            fns[("torch", dtype, form)] = run
    return fns


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=32 * 256, help="batch x sequence length")
    ap.add_argument("--d", type=int, default=192)
    ap.add_argument("--vocab", type=int, default=1088)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    if min(args.rows, args.d, args.vocab, args.rounds) < 1:
        raise UserError("--rows, --d, --vocab and --rounds must be positive")
    shapes = layer_shapes(args.d, args.vocab)
    times, (load_before, load) = interleaved(products(args.rows, shapes), args.rounds)
    flops = sum(2 * args.rows * k * n for k, n in shapes)
    print(f"{len(shapes)} products of {args.rows} rows, (K, N) {shapes}: {flops / 1e9:.2f} GFLOP a form; "
          f"{os.cpu_count()} cores; median of {args.rounds} interleaved rounds; "
          f"load {load_before:.2f} before, {load:.2f} after")
    print("| form | dtype | jax ms | torch ms | jax GFLOP/s | torch GFLOP/s | torch / jax time |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for dtype in ("float32", "bfloat16"):
        for form in FORMS:
            j = statistics.median(times[("jax", dtype, form)])
            t = statistics.median(times[("torch", dtype, form)]) if ("torch", dtype, form) in times else None
            print(f"| `{form}` | {dtype} | {1e3 * j:.1f} | {'' if t is None else f'{1e3 * t:.1f}'} | "
                  f"{flops / j / 1e9:.0f} | {'' if t is None else f'{flops / t / 1e9:.0f}'} | "
                  f"{'' if t is None else f'{t / j:.2f}x'} |")
    return 0


if __name__ == "__main__":
    main()
