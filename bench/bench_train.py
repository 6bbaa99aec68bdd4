"""Throughput of the full training step (data loader, forward, backward, AdamW) for a named GPT config.

    python bench/bench_train.py                                   # CPU: tiny model, < 1 minute
    python bench/bench_train.py --model gpt2 --batch_size 32 --block-size 1024 --steps 30   # one GPU

Builds the trainer exactly as a recipe does (mesh, sharding, optimizer, donated jitted step), feeds it
batches from a TokenDataset over random tokens through the background Prefetcher, runs warm-up steps
(compilation), then times ``--steps`` steps with one device sync at the end. Prints tokens/s, ms per
step and MFU (nanoGPT's 6N + 12 L C T flops per token over the peak: ``--peak-tflops`` per device,
default from the device kind when known), and one JSON line for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from xtts_jax.errors import UserError, run_cli


def parse(argv):
    from xtts_jax.models.gpt_config import GPTConfig
    from xtts_jax.train.sharding import MeshConfig
    from xtts_jax.train.trainer import add_config_args

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny", help="GPT preset: nano, tiny, gpt2, gpt2-medium, ...")
    ap.add_argument("--block-size", type=int, default=None, help="sequence length (default: the preset's, 128 on CPU)")
    ap.add_argument("--batch_size", type=int, default=None, help="sequences per step (default 4 on CPU, 32 else)")
    ap.add_argument("--grad_accum", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation)")
    ap.add_argument("--loss-chunk", type=int, default=0, help="cross-entropy over chunks of this many positions (0: full logits)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak TFLOP/s per device for MFU")
    add_config_args(ap, GPTConfig(), "model.")
    add_config_args(ap, MeshConfig(), "mesh.")
    return ap.parse_args(argv)


@run_cli
def main(argv=None) -> int:
    args = parse(argv)
    import jax

    from xtts_jax.models.gpt_config import get_config
    from xtts_jax.train import sharding as shd
    from xtts_jax.train.data import Prefetcher, TokenDataset
    from xtts_jax.train.lm import LMTask
    from xtts_jax.train.metrics import peak_flops_for
    from xtts_jax.train.optim import TrainConfig
    from xtts_jax.train.sharding import MeshConfig
    from xtts_jax.train.trainer import Trainer, config_from_args

    if args.steps < 1 or args.warmup < 1:
        raise UserError(f"--steps {args.steps} and --warmup {args.warmup} must both be at least 1")
    cpu = jax.default_backend() == "cpu"
    base = get_config(args.model)
    block = args.block_size or (min(base.block_size, 128) if cpu else base.block_size)
    model_cfg = config_from_args(args, get_config(args.model, block_size=block), "model.")
    batch = args.batch_size or (4 if cpu else 32)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops_for(jax.devices()[0])

    with tempfile.TemporaryDirectory() as tmp:
        # Random tokens: the loader does the same work as on real text (memmap gather, int32 cast).
        path = os.path.join(tmp, "tokens.bin")
        rng = np.random.default_rng(0)
        rng.integers(0, model_cfg.vocab_size, 1 << 20, dtype=np.uint16).tofile(path)
        data = TokenDataset(path, block)
        cfg = TrainConfig(steps=args.warmup + args.steps, batch_size=batch, grad_accum=args.grad_accum,
                          warmup_steps=1, out_dir=os.path.join(tmp, "run"), peak_flops=peak)
        trainer = Trainer(LMTask(model_cfg, loss_chunk=args.loss_chunk), cfg, config_from_args(args, MeshConfig(), "mesh."))
        pi, pc = jax.process_index(), jax.process_count()
        make = lambda s: shd.global_batch(data.batch(0, s, batch, pi, pc), trainer.mesh)  # noqa: E731
        t0 = time.perf_counter()
        state = trainer.init_state(jax.random.PRNGKey(0))
        with Prefetcher(make, 0, cfg.steps) as batches:
            it = iter(batches)
            for _ in range(args.warmup):
                state, metrics = trainer.train_step(state, next(it)[1])
            jax.block_until_ready(metrics)
            t1 = time.perf_counter()
            for _ in range(args.steps):
                state, metrics = trainer.train_step(state, next(it)[1])
            loss = float(metrics["loss"])  # the one sync of the timed loop
            t2 = time.perf_counter()

    tokens_per_s = args.steps * batch * block / (t2 - t1)
    flops = model_cfg.flops_per_token(block)
    result = {"model": args.model, "params_non_embedding": model_cfg.num_params(non_embedding=True),
              "batch_size": batch, "block_size": block, "grad_accum": args.grad_accum,
              "devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind,
              "dtype": str(np.dtype(model_cfg.dtype)), "scan_layers": model_cfg.scan,
              "attention": model_cfg.attention_impl, "loss_chunk": args.loss_chunk, "warmup_s": round(t1 - t0, 2),
              "step_ms": round(1e3 * (t2 - t1) / args.steps, 2), "tokens_per_s": round(tokens_per_s, 1),
              "flops_per_token": flops, "achieved_tflops": round(flops * tokens_per_s / 1e12, 3),
              "mfu": round(flops * tokens_per_s / (peak * jax.device_count()), 4) if peak else None,
              "final_loss": round(loss, 4)}
    print(f"{args.model} B={batch} T={block} on {jax.device_count()} x {result['device_kind']} "
          f"({result['dtype']}): {tokens_per_s:,.0f} tokens/s, {result['step_ms']} ms/step, "
          f"{result['achieved_tflops']} TFLOP/s, MFU {result['mfu'] if peak else 'n/a (give --peak-tflops)'}; "
          f"warm-up {result['warmup_s']} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
