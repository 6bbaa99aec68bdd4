"""Our CPU training step beside PyTorch's, interleaved: the GPT of the demo's shape and the TTS generator.

    python bench/bench_train_cpu.py                          # both shapes, all variants (~10 min on 2 cores)
    python bench/bench_train_cpu.py --shapes gpt --rounds 7 --no-compile

Shapes: ``gpt`` is the text GPT of the demo's width (6 layers, d 192, 4 heads, vocabulary 1,088, T 256,
batch 32); ``tts`` is the generator's full step at the ``demo`` preset (recipes/train_tts.py's
TTSTask: conditioning encoder on a 3 s reference mel, 16 conditioning vectors + 64 text + 320 audio
positions, 722 text ids, 1,026 audio ids, batch 32). Each step is the whole thing: forward, backward,
global-norm clipping at 1.0, AdamW.

Variants, each built once and then run once per round in turn (A B C D A B C D ...), so a change in
the machine's load hits all of them alike; the table gives medians and the load averages:
  ``jax``         our Trainer on one CPU device, built as the recipes build it (CPU defaults of GPTConfig)
  ``jax-bf16``    the same with ``compute_dtype`` bfloat16 (see ``jax-cores-bf16``)
  ``jax-cores``   the same over one device per core (sharding.devices_per_cpu_core), data-parallel
  ``jax-cores-bf16`` the same with ``compute_dtype`` bfloat16: matmuls in bf16 with float32
                  accumulation, parameters, residual stream, softmax and loss in float32
  ``torch``       transformers' GPT2LMHeadModel of the same depth, width, heads, sequence length and
                  output vocabulary (bench_torch_gpt2.make_step), eager, ``torch.set_num_threads`` = cores
  ``torch-bf16``  the same under ``torch.autocast`` to bfloat16 (PyTorch's mixed precision on CPU)
  ``torch-compile`` the same under ``torch.compile`` (compiling takes a minute or two on 2 cores)
For the TTS shape the PyTorch side is that GPT-2 over the same 400 positions with the audio vocabulary
(no conditioning encoder, one head): a little less work than ours. tokens/s counts the step's target
positions (GPT: 256 per row; TTS: 320 audio slots per row, as the trainer counts them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xtts_jax.errors import run_cli

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

VARIANTS = ("jax", "jax-bf16", "jax-cores", "jax-cores-bf16", "torch", "torch-bf16", "torch-compile")


def jax_step(task, batch_rows: np.ndarray, devices):
    """A closure that runs one step of the shared Trainer for ``task`` on ``devices``."""
    import jax

    from xtts_jax.train import sharding as shd
    from xtts_jax.train.optim import TrainConfig
    from xtts_jax.train.trainer import Trainer

    cfg = TrainConfig(steps=1000, batch_size=len(batch_rows), lr=6e-4, warmup_steps=1, grad_clip=1.0,
                      out_dir=tempfile.mkdtemp())
    trainer = Trainer(task, cfg, shd.MeshConfig(), devices=devices)
    state = [trainer.init_state(jax.random.PRNGKey(0))]
    batch = shd.global_batch(batch_rows, trainer.mesh)

    def step():
        state[0], metrics = trainer.train_step(state[0], batch)
        jax.block_until_ready(metrics)

    return step


def in_bf16(task):
    """``task`` with its GPT's matmuls in bfloat16 (``compute_dtype``; the TTS task's GPT inside its config)."""
    import dataclasses

    cfg = task.config
    if hasattr(cfg, "gpt"):
        return dataclasses.replace(task, config=dataclasses.replace(cfg, gpt=dataclasses.replace(cfg.gpt, compute_dtype="bfloat16")))
    return dataclasses.replace(task, config=dataclasses.replace(cfg, compute_dtype="bfloat16"))


def gpt_shape(batch: int):
    """(LM task, a batch of token windows, torch GPT-2 kwargs, target positions per step)."""
    from xtts_jax.models.gpt_config import get_config
    from xtts_jax.train.lm import LMTask

    block, vocab = 256, 1088
    cfg = get_config("tiny", n_layer=6, n_head=4, n_embd=192, vocab_size=vocab, block_size=block)
    rows = np.random.default_rng(0).integers(0, vocab, (batch, block + 1)).astype(np.int32)
    torch_kw = dict(n_layer=6, n_head=4, n_embd=192, vocab_size=cfg.padded_vocab_size, block=block)
    return LMTask(cfg), rows, torch_kw, batch * block


def tts_shape(batch: int):
    """The same for the TTS generator at the demo preset, rows packed as recipes/train_tts.py packs them."""
    import dataclasses
    import importlib.util

    from xtts_jax.models import tts as tts_lib

    spec = importlib.util.spec_from_file_location("train_tts", ROOT / "recipes" / "train_tts.py")
    recipe = importlib.util.module_from_spec(spec)
    sys.modules["train_tts"] = recipe  # dataclasses look their module up
    spec.loader.exec_module(recipe)
    cfg = tts_lib.get_config("demo")
    cfg = dataclasses.replace(cfg, text_vocab_size=722, text_start_token=0, text_stop_token=0)
    mel = cfg.conditioning.mel_config
    ref_frames = mel.n_frames(3 * mel.sample_rate)
    text_width, audio_width = cfg.text_positions, cfg.audio_positions
    rng = np.random.default_rng(0)
    text = rng.integers(0, cfg.text_vocab_size, (batch, text_width))
    audio = rng.integers(0, cfg.num_audio_codes, (batch, audio_width))
    ref = rng.standard_normal((batch, mel.n_mels * ref_frames))
    lengths = np.tile([text_width, audio_width], (batch, 1))
    rows = np.concatenate([lengths, text, audio, ref], axis=1).astype(np.float32)
    task = recipe.TTSTask(cfg, text_width, audio_width, ref_frames)
    positions = cfg.conditioning.num_latents + text_width + audio_width
    torch_kw = dict(n_layer=cfg.gpt.n_layer, n_head=cfg.gpt.n_head, n_embd=cfg.gpt.n_embd,
                    vocab_size=cfg.audio_vocab_size, block=positions)
    return task, rows, torch_kw, batch * audio_width


@run_cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", default=["gpt", "tts"], choices=["gpt", "tts"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--no-compile", action="store_true", help="leave out torch-compile")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5, help="timed steps per variant (after 2 untimed)")
    args = ap.parse_args(argv)
    variants = [v for v in args.variants if not (args.no_compile and v == "torch-compile")]

    from xtts_jax.train.sharding import devices_per_cpu_core

    cores = devices_per_cpu_core(args.batch_size)  # before JAX starts
    import jax
    import torch

    from bench_torch_gpt2 import make_step

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    print(f"{time.strftime('%Y-%m-%d %H:%M')}: {os.cpu_count()} CPUs, JAX {jax.__version__} "
          f"({jax.device_count()} CPU devices), torch {torch.__version__} ({torch.get_num_threads()} threads)")
    for shape in args.shapes:
        task, rows, torch_kw, tokens = (gpt_shape if shape == "gpt" else tts_shape)(args.batch_size)
        steps = {}
        for v in variants:
            t0 = time.perf_counter()
            if v == "jax":
                steps[v] = jax_step(task, rows, jax.devices()[:1])
            elif v == "jax-bf16":
                steps[v] = jax_step(in_bf16(task), rows, jax.devices()[:1])
            elif v == "jax-cores":
                steps[v] = jax_step(task, rows, jax.devices()[:cores])
            elif v == "jax-cores-bf16":
                steps[v] = jax_step(in_bf16(task), rows, jax.devices()[:cores])
            else:
                torch_step = make_step(**torch_kw, batch=args.batch_size, compile=v == "torch-compile",
                                       bf16=v == "torch-bf16")[0]
                steps[v] = lambda s=torch_step: s().item()  # item(): waits for the step
            for _ in range(2):  # compile / warm up
                steps[v]()
            print(f"  {shape} {v}: built and warmed up in {time.perf_counter() - t0:.0f} s", flush=True)
        times = {v: [] for v in variants}
        load_before = os.getloadavg()
        for _ in range(args.rounds):
            for v in variants:
                t = time.perf_counter()
                steps[v]()
                times[v].append(time.perf_counter() - t)
        load = os.getloadavg()
        print(f"\n{shape}: batch {args.batch_size}, {tokens // args.batch_size} target positions per row; "
              f"load averages {load_before[0]:.2f} before, {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} after")
        ref = statistics.median(times["torch"]) if "torch" in times else None
        print("| variant | ms per step (median) | tokens/s | vs torch eager | all steps, ms |\n|---|---:|---:|---:|---|")
        for v, ts in times.items():
            med = statistics.median(ts)
            ratio = f"{ref / med:.2f}x" if ref else "-"
            print(f"| {v} | {1e3 * med:.0f} | {tokens / med:,.0f} | {ratio} | {' '.join(f'{1e3 * t:.0f}' for t in ts)} |")
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
