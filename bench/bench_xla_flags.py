"""What XLA's CPU flags change: one workload under several ``XLA_FLAGS`` sets, interleaved.

    python bench/bench_xla_flags.py --workload products            # XTTS-v2-size decode products
    python bench/bench_xla_flags.py --workload train-gpt --rounds 5
    python bench/bench_xla_flags.py --workload products --flags default= ynn-off=--xla_cpu_experimental_ynn_fusion_type=

``XLA_FLAGS`` is read once, when JAX starts its CPU backend, so each flag set runs in its own
worker process. The parent builds every worker (compile and warm-up happen there), then asks them
for one timed run each, in turn, round after round (A B C A B C ...), so a change in the machine's
load hits all of them alike; medians, load averages before and after.

Workloads:
  ``products``     one vector through ``--layers`` per-layer [d, 12 d] float32 matrices in one jit,
                   unrolled, as the batch-1 decode step reads the weights (bench_cpu_roofline's
                   ``jax f32`` row; 1.5 GB at XTTS-v2 size)
  ``products-t``   the same weights stored [12 d, d] (PyTorch's ``Linear`` layout), ``W @ x``
  ``decode``      our one-jit sampler at XTTS-v2 size (``--layers`` blocks of width ``--d``), batch 1,
                   32 conditioning + 33 text positions, 20 new tokens with XTTS-v2's sampling
  ``train-gpt``    our full training step at the demo GPT's shape (bench_train_cpu's ``jax-cores``)
  ``train-tts``    the same for the TTS generator at the ``demo`` preset

Default flag sets (names are labels, values go to ``XLA_FLAGS`` as they are):
  ``default``      nothing
  ``ynn-off``      ``--xla_cpu_experimental_ynn_fusion_type=`` (no YNNPACK dots: XLA's own / Eigen's)
  ``ynn-all``      YNNPACK for dots, fused dots, elementwise and reductions
  ``xnn-dot``      XNNPACK's dot fusions instead of YNNPACK's
  ``onednn``       ``--xla_cpu_use_onednn=true``
  ``eigen-1t``     ``--xla_cpu_multi_thread_eigen=false`` (is the second core doing anything?)
  ``emitters-off`` ``--xla_cpu_use_fusion_emitters=false`` (XLA's older loop emitters for fusions)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from xtts_jax.errors import UserError, run_cli

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("products", "products-t", "decode", "train-gpt", "train-tts")
FLAG_SETS = {
    "default": "",
    "ynn-off": "--xla_cpu_experimental_ynn_fusion_type=",
    "ynn-all": "--xla_cpu_experimental_ynn_fusion_type=individual_dot,dot,eltwise,reduce",
    "xnn-dot": "--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_experimental_xnn_fusion_type=dot",
    "onednn": "--xla_cpu_use_onednn=true",
    "eigen-1t": "--xla_cpu_multi_thread_eigen=false",
    "emitters-off": "--xla_cpu_use_fusion_emitters=false",
}


def build(workload: str, layers: int, d: int):
    """A no-argument callable that runs ``workload`` once and waits for its result."""
    if workload.startswith("train"):
        sys.path.insert(0, str(ROOT / "bench"))
        from bench_train_cpu import gpt_shape, jax_step, tts_shape

        from xtts_jax.train.sharding import devices_per_cpu_core

        cores = devices_per_cpu_core(32)  # before JAX starts, as the recipes do
        import jax

        task, rows, _, _ = (gpt_shape if workload == "train-gpt" else tts_shape)(32)
        return jax_step(task, rows, jax.devices()[:cores])
    import jax
    import jax.numpy as jnp
    import numpy as np

    if workload == "decode":
        import dataclasses

        from xtts_jax.inference.sampling import SamplingConfig, generate_padded, pad_prompts
        from xtts_jax.inference.tts import XTTS_SAMPLING, random_tts
        from xtts_jax.models.tts import get_config
        from xtts_jax.models.tts_decoder import TTSDecoder

        cfg = get_config("xtts-v2")
        # the prompt's conditioning vectors are given: no encoder
        cfg = dataclasses.replace(cfg, conditioning=None, gpt=dataclasses.replace(
            cfg.gpt, n_layer=layers, n_embd=d, n_head=max(1, d // 64)))
        model = random_tts(cfg)
        rng = np.random.default_rng(0)
        n_cond, new = 32, 20
        dec = TTSDecoder(model, jnp.asarray(rng.standard_normal((n_cond, d), np.float32)))
        tokens, lengths = pad_prompts([dec.prompt(range(n_cond), rng.integers(0, 5000, 32).tolist())])
        width = -(-tokens.shape[1] // 16) * 16
        tokens = jnp.asarray(np.pad(tokens, ((0, 0), (0, width - tokens.shape[1]))))
        sampling = SamplingConfig(**XTTS_SAMPLING, max_new_tokens=new)
        return lambda: jax.block_until_ready(generate_padded(
            dec, tokens, jnp.asarray(lengths), jax.random.key(1), sampling, width + new).tokens)

    rng = np.random.default_rng(0)
    shape = (d, 12 * d) if workload == "products" else (12 * d, d)
    weights = [jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * 0.02) for _ in range(layers)]
    x = jnp.asarray(rng.standard_normal(d, dtype=np.float32))

    def products(ws, v):
        if workload == "products":
            return sum((v[None] @ w)[0, 0] for w in ws)
        return sum((w @ v[:, None])[0, 0] for w in ws)

    run = jax.jit(products)
    return lambda: jax.block_until_ready(run(weights, x))


def worker(workload: str, layers: int, d: int) -> int:
    """Build, warm up, say ``ready``; then one timed run per line read from stdin."""
    fn = build(workload, layers, d)
    for _ in range(2):
        fn()
    print("ready", flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        fn()
        print(f"{time.perf_counter() - start:.6f}", flush=True)
    return 0


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", choices=WORKLOADS, default="products")
    ap.add_argument("--flags", nargs="+", metavar="NAME=XLA_FLAGS",
                    help=f"flag sets to compare (default: {' '.join(FLAG_SETS)})")
    ap.add_argument("--layers", type=int, default=30, help="products: layers (XTTS-v2: 30)")
    ap.add_argument("--d", type=int, default=1024, help="products: width (XTTS-v2: 1024)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.layers < 1 or args.d < 8 or args.rounds < 1:
        raise UserError("--layers, --d and --rounds must be positive (--d at least 8)")
    if args.worker:
        return worker(args.workload, args.layers, args.d)
    sets = dict(FLAG_SETS)
    if args.flags:
        if any("=" not in f for f in args.flags):
            raise UserError("each --flags entry is NAME=XLA_FLAGS (an empty value is allowed: default=)")
        sets = dict(f.split("=", 1) for f in args.flags)

    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--workload", args.workload,
           "--layers", str(args.layers), "--d", str(args.d)]
    workers = {}
    for name, flags in sets.items():
        env = {**os.environ, "XLA_FLAGS": " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), flags]))}
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        if proc.stdout.readline().strip() != "ready":
            proc.kill()
            raise UserError(f"flag set {name!r} ({flags!r}) did not start: XLA refused the flags or the workload failed")
        workers[name] = proc
        print(f"  {name}: built and warmed up in {time.perf_counter() - t0:.0f} s", flush=True)

    times = {name: [] for name in workers}
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for name, proc in workers.items():
            proc.stdin.write("go\n")
            proc.stdin.flush()
            times[name].append(float(proc.stdout.readline()))
    load = os.getloadavg()
    for proc in workers.values():
        proc.stdin.close()
        proc.wait()

    import jax

    what = {"products": f"{args.layers} layers x [{args.d}, {12 * args.d}] f32",
            "decode": f"{args.layers} layers, d {args.d}, batch 1, 20 new tokens, prefill included"}.get(
                args.workload.split("-")[0], "batch 32, one device per core")
    print(f"\n{args.workload} ({what}); JAX {jax.__version__}, {os.cpu_count()} CPUs; median of {args.rounds} "
          f"interleaved rounds; load {load_before[0]:.2f} before, {load[0]:.2f} after")
    base = statistics.median(times[next(iter(times))])
    print(f"| flag set | XLA_FLAGS | ms (median) | vs {next(iter(times))} | all, ms |\n|---|---|---:|---:|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | `{sets[name] or '-'}` | {1e3 * med:.1f} | {base / med:.2f}x | "
              f"{' '.join(f'{1e3 * t:.0f}' for t in ts)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
