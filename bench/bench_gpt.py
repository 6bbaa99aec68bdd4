"""Benchmark the GPT: forward+backward tokens/s with MFU, and one-jit KV-cache decode tokens/s.

    python bench/bench_gpt.py --config tiny                      # CPU, under a minute
    python bench/bench_gpt.py --config gpt2 --batch 16 --seq-len 1024 --peak-tflops 989 \
        --decode-batch 1 --prompt-len 64 --new-tokens 512 --peak-gbs 3350   # an H100

MFU uses nanoGPT's flops per token (6 N + 12 n_layer n_embd T). For decode at batch 1 every token
reads all weights once, so the bound is bandwidth: ``--peak-gbs`` prints the fraction reached.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import timed  # noqa: E402
from xtts_jax.errors import UserError, run_cli  # noqa: E402
from xtts_jax.inference.sampling import SamplingConfig, generate_padded  # noqa: E402
from xtts_jax.models.gpt import GPT  # noqa: E402
from xtts_jax.models.gpt_config import get_config  # noqa: E402


def bench_train(model: GPT, batch: int, seq_len: int, repeats: int) -> float:
    tokens = jax.random.randint(jax.random.key(0), (batch, seq_len + 1), 0, model.config.vocab_size)

    @eqx.filter_jit
    def step(m, t):
        def loss(m):
            logits = jax.vmap(m)(t[:, :-1])
            logp = jax.nn.log_softmax(logits)
            return -jnp.take_along_axis(logp, t[:, 1:, None], -1).mean()

        return eqx.filter_value_and_grad(loss)(m)

    return timed(lambda: step(model, tokens), repeats)


def bench_decode(model: GPT, batch: int, prompt_len: int, new_tokens: int, repeats: int, sampling: bool) -> float:
    prompts = jax.random.randint(jax.random.key(1), (batch, prompt_len), 0, model.config.vocab_size)
    lengths = jnp.full((batch,), prompt_len, jnp.int32)
    cfg = SamplingConfig(temperature=0.75 if sampling else 0.0, top_k=50 if sampling else 0,
                         top_p=0.85 if sampling else 1.0, repetition_penalty=1.2 if sampling else 1.0,
                         max_new_tokens=new_tokens)
    return timed(lambda: generate_padded(model, prompts, lengths, jax.random.key(2), cfg, prompt_len + new_tokens).tokens, repeats)


@run_cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny")
    p.add_argument("--mlp-activation")
    p.add_argument("--dtype", default="auto", help="compute dtype: auto, float32, bfloat16")
    p.add_argument("--unroll", action="store_true", help="unroll layers instead of lax.scan")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--decode-batch", type=int, nargs="+", default=[1])
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--greedy", action="store_true", help="decode greedily (default: temperature/top-k/top-p/penalty)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peak-tflops", type=float, help="peak flop/s of the device, for MFU")
    p.add_argument("--peak-gbs", type=float, help="peak memory bandwidth in GB/s, for the decode roofline")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-decode", action="store_true")
    args = p.parse_args(argv)

    overrides = dict(compute_dtype=args.dtype, scan_layers=not args.unroll)
    if args.mlp_activation:
        overrides["mlp_activation"] = args.mlp_activation
    cfg = get_config(args.config, **overrides)
    seq_len = args.seq_len or cfg.block_size
    if seq_len > cfg.block_size:
        raise UserError(f"--seq-len {seq_len} exceeds block_size {cfg.block_size}")
    if args.prompt_len + args.new_tokens > cfg.block_size:
        raise UserError(f"--prompt-len + --new-tokens exceeds block_size {cfg.block_size}")
    model = GPT(cfg, key=jax.random.key(0))
    n_params = model.num_params(non_embedding=True)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(f"config: {args.config} {dataclasses.asdict(cfg)}")
    print(f"parameters (no position embeddings): {n_params / 1e6:.2f}M, compute dtype {jnp.dtype(cfg.dtype).name}, "
          f"attention {cfg.attention_impl}, layers {'scan' if cfg.scan else 'unrolled'}\n")
    print("| measurement | batch | tokens/s | ms/step | MFU / roofline |")
    print("|---|---|---|---|---|")
    if not args.skip_train:
        seconds = bench_train(model, args.batch, seq_len, args.repeats)
        tps = args.batch * seq_len / seconds
        mfu = f"{100 * tps * cfg.flops_per_token(seq_len) / (args.peak_tflops * 1e12):.1f}% MFU" if args.peak_tflops else "-"
        print(f"| forward+backward T={seq_len} | {args.batch} | {tps:,.0f} | {1e3 * seconds:.1f} | {mfu} |")
    if not args.skip_decode:
        weight_bytes = model.num_params(non_embedding=False) * jnp.dtype(cfg.dtype).itemsize
        for batch in args.decode_batch:
            seconds = bench_decode(model, batch, args.prompt_len, args.new_tokens, args.repeats, not args.greedy)
            tps = batch * args.new_tokens / seconds
            roof = (f"{100 * (tps / batch) * weight_bytes / (args.peak_gbs * 1e9):.1f}% of weight-read bound"
                    if args.peak_gbs else "-")
            kind = "greedy" if args.greedy else "sampled"
            print(f"| decode {kind}, prompt {args.prompt_len} + {args.new_tokens} new (incl. prefill) | {batch} | "
                  f"{tps:,.0f} | {1e3 * seconds / args.new_tokens:.2f}/token | {roof} |")
    return 0


if __name__ == "__main__":
    main()
