"""Benchmark TTS decoding: audio tokens/s of the one-jit KV-cache sampler with XTTS-v2 sampling.

    python bench/bench_tts_decode.py --size tiny --batch 1 4                 # CPU, a minute
    python bench/bench_tts_decode.py --size xtts-v2 --batch 1 8 32 --new-tokens 400   # a GPU

Each row's prompt is XTTS-v2's: ``num_latents`` conditioning vectors, ``--text-tokens`` text
tokens and the audio start token. Sampling: temperature 0.75, top-k 50, top-p 0.85, repetition
penalty 10 over the generated audio tokens; no stop token, so every row makes ``--new-tokens``.
Tokens/s counts all rows and includes the prefill (as Hugging Face ``generate`` timings do).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import timed  # noqa: E402
from xtts_jax.errors import UserError, run_cli  # noqa: E402
from xtts_jax.inference.sampling import SamplingConfig, generate_padded, pad_prompts  # noqa: E402
from xtts_jax.inference.tts import XTTS_SAMPLING, inference_layout, random_tts  # noqa: E402
from xtts_jax.models.tts import TTS, get_config  # noqa: E402
from xtts_jax.models.tts_decoder import TTSDecoder  # noqa: E402


def bench(model: TTS, batch: int, text_tokens: int, new_tokens: int, repeats: int) -> float:
    cfg = model.config
    n_cond = cfg.conditioning.num_latents if cfg.conditioning else 32
    rng = np.random.default_rng(0)
    table = jnp.asarray(rng.standard_normal((batch * n_cond, cfg.gpt.n_embd), np.float32))
    dec = TTSDecoder(model, table)
    prompts = [dec.prompt(range(b * n_cond, (b + 1) * n_cond), rng.integers(0, 5000, text_tokens).tolist())
               for b in range(batch)]
    tokens, lengths = pad_prompts(prompts)
    width = -(-tokens.shape[1] // 16) * 16
    tokens = jnp.asarray(np.pad(tokens, ((0, 0), (0, width - tokens.shape[1]))))
    sampling = SamplingConfig(**XTTS_SAMPLING, max_new_tokens=new_tokens)
    run = lambda: generate_padded(dec, tokens, jnp.asarray(lengths), jax.random.key(1), sampling, width + new_tokens).tokens  # noqa: E731
    return timed(run, repeats)


@run_cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="tiny", help="a TTS preset: tiny, small, xtts-v2")
    p.add_argument("--batch", type=int, nargs="+", default=[1])
    p.add_argument("--text-tokens", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=100)
    p.add_argument("--dtype", default="auto", help="compute dtype: auto (bfloat16 on GPU), float32, bfloat16")
    p.add_argument("--unroll", action="store_true", help="unroll layers instead of lax.scan")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    cfg = get_config(args.size)
    cfg = dataclasses.replace(cfg, gpt=dataclasses.replace(cfg.gpt, compute_dtype=args.dtype, scan_layers=not args.unroll))
    if args.new_tokens + 1 > cfg.audio_positions:
        raise UserError(f"--new-tokens {args.new_tokens} exceeds the {cfg.audio_positions - 1} audio positions")
    if args.text_tokens + 2 > cfg.text_positions:
        raise UserError(f"--text-tokens {args.text_tokens} exceeds the {cfg.text_positions - 2} text positions")
    if jax.default_backend() == "cpu":
        model = random_tts(cfg)  # numpy draws; JAX's op-by-op init is slow on CPU
    else:
        model = eqx.filter_jit(lambda k: TTS(cfg, key=k))(jax.random.key(0))
    n_params = sum(x.size for x in jax.tree.leaves(eqx.filter(model.transformer, eqx.is_array)))
    model = inference_layout(model)  # as the Synthesizer holds it (layers unstacked on CPU)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(f"size: {args.size} ({cfg.gpt.n_layer} layers, d {cfg.gpt.n_embd}, {cfg.gpt.n_head} heads, "
          f"{cfg.audio_vocab_size} audio tokens), transformer {n_params / 1e6:.1f}M parameters, "
          f"compute {jnp.dtype(cfg.gpt.dtype).name}, layers {'scan' if cfg.gpt.scan else 'unrolled'}\n")
    print("| batch | prompt | new tokens | tokens/s (all rows) | ms/step |")
    print("|---|---|---|---|---|")
    n_cond = cfg.conditioning.num_latents if cfg.conditioning else 32
    for batch in args.batch:
        seconds = bench(model, batch, args.text_tokens, args.new_tokens, args.repeats)
        print(f"| {batch} | {n_cond} cond + {args.text_tokens + 1} | {args.new_tokens} | "
              f"{batch * args.new_tokens / seconds:,.1f} | {1e3 * seconds / args.new_tokens:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    main()
