"""HiFiGAN generator speed as a multiple of real time (audio seconds rendered per wall second).

One jitted call renders ``--seconds`` of audio for ``--batch`` utterances from random features
(mel frames, or GPT latents for xtts-v2); weights are random (speed does not depend on them).
Compile time is reported apart; the timed runs wait for the result (``block_until_ready``).

    python bench/bench_hifigan.py                       # V1, batch 1, 10 s of audio
    python bench/bench_hifigan.py --presets v1 v2 v3 xtts-v2 --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from xtts_jax.errors import UserError, run_cli
from xtts_jax.models.hifigan import HifiganGenerator, fold_weight_norm, preset


def random_generator(name: str, seed: int = 0) -> HifiganGenerator:
    """A folded generator with numpy-drawn weights: structure from eval_shape, no per-shape
    jax.random compiles (seconds each on a busy CPU)."""
    cfg = preset(name)
    rng = np.random.default_rng(seed)
    shapes = eqx.filter_eval_shape(lambda: fold_weight_norm(HifiganGenerator(cfg, key=jax.random.PRNGKey(0))))
    return jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.standard_normal(s.shape) * 0.02, s.dtype), shapes)


def bench_one(name: str, seconds: float, batch: int, repeats: int) -> dict:
    gen = random_generator(name)
    cfg = gen.config
    if cfg.input_interpolation:  # GPT latents: each becomes prod(factors) frames before the upsampler
        frames = math.ceil(seconds * cfg.sample_rate / (cfg.hop_length * math.prod(cfg.input_interpolation)))
    else:
        frames = math.ceil(seconds * cfg.sample_rate / cfg.hop_length)
    feats = jax.random.normal(jax.random.PRNGKey(1), (batch, cfg.in_channels, frames))
    speaker = jnp.ones((batch, cfg.cond_channels)) if cfg.cond_channels else None

    @eqx.filter_jit
    def render(g, x, s):
        return jax.vmap(g)(x, s) if s is not None else jax.vmap(g)(x)

    t0 = time.perf_counter()
    out = jax.block_until_ready(render(gen, feats, speaker))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(render(gen, feats, speaker))
        times.append(time.perf_counter() - t0)
    audio_s = out.shape[-1] / cfg.sample_rate
    best, median = min(times), float(np.median(times))
    return {"preset": name, "device": jax.devices()[0].device_kind, "batch": batch,
            "audio_s": round(audio_s, 3), "sample_rate": cfg.sample_rate, "compile_s": round(compile_s, 2),
            "median_s": round(median, 4), "best_s": round(best, 4),
            "x_realtime": round(batch * audio_s / median, 2)}


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["v1"])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.batch < 1 or args.repeats < 1:
        raise UserError("--seconds must be positive, --batch and --repeats at least 1.")
    rows = []
    header = f"{'preset':<8} {'device':<14} {'batch':>5} {'audio s':>8} {'compile s':>9} {'median s':>9} {'x realtime':>10}"
    print(header)
    print("-" * len(header))
    for name in args.presets:
        r = bench_one(name, args.seconds, args.batch, args.repeats)
        rows.append(r)
        print(f"{r['preset']:<8} {r['device'][:14]:<14} {r['batch']:>5} {r['audio_s']:>8.2f} "
              f"{r['compile_s']:>9.2f} {r['median_s']:>9.3f} {r['x_realtime']:>10.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    main()
