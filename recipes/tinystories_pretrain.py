"""Pretrain a GPT on children's stories: the embedded corpus on CPU by default, TinyStories or gpt2 on GPU.

    python recipes/tinystories_pretrain.py                    # CPU, a few minutes: embedded stories, tiny model
    python recipes/tinystories_pretrain.py --resume           # continue the run in --out (its lr schedule too)
    python -m xtts_jax.text.prepare TinyStories-train.txt --val TinyStories-valid.txt --out data/tinystories
    python recipes/tinystories_pretrain.py --preset gpt2 --data data/tinystories --out runs/ts_gpt2
    python recipes/tinystories_pretrain.py --steps 2000 --model.n-layer 6 --lr 1e-3   # any config field

The story: prepare tokens (once), count them (unigram entropy: what a model with no context scores),
build the task and the trainer, train with evals, checkpoints and samples, and compare the final
validation loss with the unigram entropy. On the small embedded corpus the model's vocabulary is
compacted to the GPT-2 ids the corpus uses (582 of 50,257), so CPU time goes into the transformer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

from xtts_jax.errors import UserError, run_cli

# Named setups: the model, the training config, and whether to compact the vocabulary.
PRESETS = {
    "cpu": dict(
        model=dict(n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.0),
        train=dict(steps=300, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=30, weight_decay=0.1,
                   eval_every=100, eval_steps=8, ckpt_every=150, keep_last=2, log_every=20, sample_every=300),
        compact_vocab=True, data="data/embedded_stories", out="runs/tinystories_cpu"),
    # GPT-2 124M at T=1024 on one GPU; 32 x 4 x 1024 = 131k tokens per step (nanoGPT uses ~0.5M).
    "gpt2": dict(
        model=dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, dropout=0.0, scan_layers=False),
        train=dict(steps=20000, batch_size=128, grad_accum=4, lr=6e-4, min_lr=6e-5, warmup_steps=700,
                   weight_decay=0.1, eval_every=500, eval_steps=40, ckpt_every=1000, keep_last=2,
                   log_every=10, sample_every=1000),
        compact_vocab=False, data=None, out="runs/tinystories_gpt2"),
}
PROMPTS = ("Once upon a time", "One day, a little")


def parse(argv):
    from xtts_jax.models.gpt_config import GPTConfig
    from xtts_jax.train.optim import TrainConfig
    from xtts_jax.train.sharding import MeshConfig
    from xtts_jax.train.trainer import add_config_args

    # The preset decides the defaults, so --help (and --preset gpt2 --help) shows what will run.
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--preset", choices=PRESETS, default="cpu")
    preset = PRESETS[first.parse_known_args(argv)[0].preset]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--preset", choices=PRESETS, default="cpu", help="named setup; config defaults below follow it")
    ap.add_argument("--data", help="folder with train.bin and val.bin (xtts_jax.text.prepare); "
                                   "the cpu preset makes the embedded corpus there when missing")
    ap.add_argument("--text", nargs="+", help="corpus files to prepare into --data first (TinyStories .txt/.json)")
    ap.add_argument("--out", help="run folder: checkpoints, metrics.jsonl, model.safetensors "
                                  f"(default {preset['out']})")
    ap.add_argument("--config", help="JSON file with 'model', 'train' and 'mesh' sections")
    ap.add_argument("--compact-vocab", choices=("auto", "yes", "no"), default="auto")
    ap.add_argument("--compute-dtype", choices=("auto", "float32", "bfloat16"),
                    help="the GPT's matmul dtype while training (default: bfloat16 on a CPU with AVX512-BF16/AMX, "
                         "1.7x the cpu preset's step at the same validation loss; else --model.compute-dtype); "
                         "model.safetensors keeps --model.compute-dtype")
    ap.add_argument("--loss-chunk", type=int, default=0,
                    help="cross-entropy over chunks of this many positions, never all logits at once (0: off)")
    ap.add_argument("--resume", action="store_true",
                    help="continue from the latest checkpoint in --out, on its learning-rate schedule: "
                         "steps past the schedule's end train at min_lr (nothing there: starts fresh)")
    ap.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize() (multi-host)")
    add_config_args(ap, TrainConfig(**preset["train"]), skip=("out_dir",))  # --out names the run folder
    add_config_args(ap, GPTConfig(**preset["model"]), "model.")
    add_config_args(ap, MeshConfig(), "mesh.")
    return ap.parse_args(argv)


def ensure_data(args, preset: dict) -> str:
    """The prepared data folder; prepares --text files, or the embedded corpus, when asked or missing."""
    from xtts_jax.text.prepare import prepare, prepare_embedded

    data = args.data or preset["data"]
    if data is None:
        raise UserError(f"the {args.preset} preset needs --data (a prepared folder) or --text files")
    if args.text:
        prepare(args.text, data)
    elif not os.path.isfile(os.path.join(data, "train.bin")):
        if args.data or args.preset != "cpu":
            raise UserError(f"{data} has no train.bin; make it with python -m xtts_jax.text.prepare")
        print(f"preparing the embedded story corpus in {data}")
        prepare_embedded(data)
    for split in ("train", "val"):
        if not os.path.isfile(os.path.join(data, f"{split}.bin")):
            raise UserError(f"{data} has no {split}.bin; make it with python -m xtts_jax.text.prepare")
    return data


@run_cli
def main(argv=None) -> int:
    args = parse(argv)
    import jax

    if args.distributed:
        jax.distributed.initialize()
    from xtts_jax.models.cpu_kernels import training_dtype
    from xtts_jax.models.gpt_config import GPTConfig
    from xtts_jax.train.data import TokenDataset
    from xtts_jax.train.lm import LMTask, VocabMap, unigram_entropy
    from xtts_jax.train.metrics import peak_flops_for
    from xtts_jax.train.optim import TrainConfig
    from xtts_jax.train.sharding import MeshConfig, devices_per_cpu_core
    from xtts_jax.train.trainer import Trainer, config_from_args

    preset = PRESETS[args.preset]
    file_cfg = {}
    if args.config:
        try:
            with open(args.config) as f:
                file_cfg = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read config file {args.config}: {e}") from None
    out = args.out or preset["out"]
    train_cfg = config_from_args(args, TrainConfig(**preset["train"], out_dir=out), "", file_cfg.get("train"))
    if argv is None and not args.distributed:  # a command-line run owns its process (a test's may not)
        devices_per_cpu_core(train_cfg.batch_size)  # one JAX device per CPU core; before JAX starts
    if not train_cfg.peak_flops:
        train_cfg = dataclasses.replace(train_cfg, peak_flops=peak_flops_for(jax.devices()[0]))
    mesh_cfg = config_from_args(args, MeshConfig(), "mesh.", file_cfg.get("mesh"))

    data_dir = ensure_data(args, preset)
    block = int(getattr(args, "model.block_size") or (file_cfg.get("model") or {}).get("block_size")
                or preset["model"]["block_size"])
    train_ds = TokenDataset(os.path.join(data_dir, "train.bin"), block)
    val_ds = TokenDataset(os.path.join(data_dir, "val.bin"), block)
    counts = np.bincount(train_ds.tokens, minlength=1 << 16)
    val_counts = np.bincount(val_ds.tokens, minlength=1 << 16)
    entropy = unigram_entropy(counts)
    compact = {"auto": preset["compact_vocab"], "yes": True, "no": False}[args.compact_vocab]
    vocab = VocabMap.from_counts(counts + val_counts) if compact else None
    model_base = GPTConfig(**preset["model"], vocab_size=vocab.size if vocab else 50257)
    model_cfg = config_from_args(args, model_base, "model.", file_cfg.get("model"))
    dtype = training_dtype(args.compute_dtype)
    task = LMTask(model_cfg, vocab, prompts=PROMPTS, loss_chunk=args.loss_chunk, compute_dtype=dtype)
    print(f"data {data_dir}: {len(train_ds):,} train / {len(val_ds):,} val tokens, "
          f"{int((counts > 0).sum()):,} distinct; unigram entropy {entropy:.3f} nats")

    pi, pc = jax.process_index(), jax.process_count()
    to_model = vocab.to_compact if vocab else (lambda x: x)
    seed, batch = train_cfg.seed, train_cfg.batch_size
    trainer = Trainer(task, train_cfg, mesh_cfg,
                      train_data=lambda step: to_model(train_ds.batch(seed, step, batch, pi, pc)),
                      # The same validation windows at every eval, so the curve compares like with like.
                      eval_data=lambda i: to_model(val_ds.batch(seed + 1, i, batch, pi, pc)),
                      meta={"recipe": "tinystories_pretrain", "preset": args.preset, "data": data_dir,
                            "unigram_entropy": entropy})
    n = sum(x.size for x in jax.tree.leaves(trainer.abstract_params))
    print(f"model {n / 1e6:.2f}M parameters ({model_cfg.n_layer} layers, n_embd {model_cfg.n_embd}, "
          f"vocab {model_cfg.vocab_size}); computing in {dtype or model_cfg.compute_dtype}; "
          f"mesh {dict(trainer.mesh.shape)}; {train_cfg.steps} steps of "
          f"{batch} x {block} tokens")
    t0 = time.time()
    result = trainer.fit(resume=args.resume)
    val = result["val_loss"]
    if val is None:  # resumed at the last step: nothing was trained, so evaluate here
        val = trainer.evaluate(result["state"]["params"])
    print(f"done in {time.time() - t0:.0f} s: validation loss {val:.3f} nats vs unigram entropy "
          f"{entropy:.3f} nats ({'below' if val < entropy else 'NOT below'} by {entropy - val:.3f})")
    print(f"checkpoints in {trainer.ckpt.directory}, weights in {os.path.abspath(os.path.join(out, 'model.safetensors'))}")
    for text in result["samples"]:
        print("---\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
