"""Which MLP activation trains best at this scale? One GPT config, every activation, several seeds.

The story: prepare the corpus (the embedded stories by default, or ``--data``: a folder holding
``train.bin``/``val.bin`` from ``xtts_jax.text.prepare``, or raw text files to prepare), check that
the seven MLP variants have parameter counts within 1% of each other, train each (activation, seed)
through the shared trainer (seed k: data order k and init key k for every activation, same token
budget, same validation batches), and write ``results.md``, ``results.json`` and ``val_loss.png``
into ``--out``. Killed? Run the same command again: finished runs are skipped, the unfinished one
resumes from its last checkpoint.

    python recipes/ablate_mlp_activation.py                  # embedded corpus, 2 CPU cores, ~5 min
    python recipes/ablate_mlp_activation.py --config tinystories-cpu \\
        --data TinyStories-train.txt --val TinyStories-valid.txt --out runs/ablation_ts
    python recipes/ablate_mlp_activation.py --config tinystories-gpu --data data/tinystories --out runs/abl_gpu
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
from pathlib import Path

import jax

from xtts_jax.errors import UserError, run_cli
from xtts_jax.models.gpt_config import GPTConfig
from xtts_jax.models.layers import MLP_ACTIVATIONS
from xtts_jax.text.prepare import prepare, prepare_embedded
from xtts_jax.train.ablation import AblationConfig, LMData, run_ablation, write_report
from xtts_jax.train.optim import TrainConfig

# name -> (GPT config, train config, compact vocabulary). Budgets are per run; an ablation is
# 7 activations x 3 seeds = 21 runs.
CONFIGS: dict[str, tuple[GPTConfig, TrainConfig, bool]] = {
    # The whole ablation took 4 min 48 s on 2 CPU cores shared with other jobs (load ~6): each
    # activation compiles once (~25 s), then a run is ~10 s of training.
    "cpu-embedded": (
        GPTConfig(n_layer=2, n_head=2, n_embd=96, block_size=64, scan_layers=False),
        TrainConfig(steps=150, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=15,
                    eval_every=25, eval_steps=8, ckpt_every=50, keep_last=1, log_every=10), True),
    # With --steps 480 (4x this budget): the committed docs/ablation result, TinyStories sample text
    # on 2 shared CPU cores in 1,532 s (docs/ablation/README.md has the exact command). Its
    # ~7,700-id vocabulary makes the output layer most of the cost at this width.
    "tinystories-cpu": (
        GPTConfig(n_layer=2, n_head=2, n_embd=96, block_size=64, scan_layers=False),
        TrainConfig(steps=120, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=12,
                    eval_every=20, eval_steps=8, ckpt_every=40, keep_last=1, log_every=10), True),
    # Real TinyStories on one GPU: a 6-layer, 384-wide GPT-2 over the full GPT-2 vocabulary,
    # 5,000 steps x 64 x 256 = 82M tokens per run (~TinyStories-33M's width, shallower).
    "tinystories-gpu": (
        GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.0),
        TrainConfig(steps=5000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=200,
                    eval_every=250, eval_steps=40, ckpt_every=500, keep_last=1, log_every=50), False),
}


def prepare_data(sources: list[str] | None, val: list[str] | None, out: Path) -> Path:
    """A folder with train.bin/val.bin: given, prepared earlier into ``out/data``, or prepared now."""
    if sources and len(sources) == 1 and (Path(sources[0]) / "train.bin").is_file():
        if val:
            raise UserError(f"{sources[0]} is already prepared; --val applies only to raw text files")
        return Path(sources[0])
    data_dir = out / "data"
    wanted = {"sources": sorted(map(str, sources or [])), "val": sorted(map(str, val or []))}
    record = data_dir / "sources.json"
    if record.is_file():  # prepared by an earlier (killed) invocation of this ablation
        if json.loads(record.read_text()) != wanted:
            raise UserError(f"{data_dir} was prepared from other files ({record}); choose another --out")
        return data_dir
    if sources:
        prepare(sources, data_dir, val_sources=val or None, val_fraction=0.05)
    else:
        prepare_embedded(data_dir)
    record.write_text(json.dumps(wanted) + "\n")
    return data_dir


def machine() -> str:
    device = jax.devices()[0]
    if device.platform == "cpu":
        return f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), JAX on CPU"
    return f"{jax.device_count()} x {device.device_kind}"


def describe(config: str, machine_name: str | None, spec: AblationConfig, data_dir: Path) -> dict:
    """The lines that head the report: machine, data, model, budget, seeds."""
    gpt, train = spec.gpt, spec.train
    meta_path = data_dir / "meta.json"
    sources = json.loads(meta_path.read_text()).get("sources", []) if meta_path.is_file() else []
    names = [Path(x["path"]).name if "path" in x else str(x.get("embedded")) for x in sources]
    data = LMData(data_dir, gpt.block_size, spec.compact_vocab)
    vocab = f"{data.vocab.size:,} (the ids the corpus uses)" if data.vocab is not None else f"{gpt.vocab_size:,}"
    tokens = train.steps * train.batch_size * gpt.block_size
    return {
        "title": f"{config}: {gpt.n_layer} layers x {gpt.n_embd}, {tokens:,} tokens/run",
        "machine": machine_name or machine(),
        "data": f"{', '.join(names) or data_dir} ({len(data.train):,} train tokens, {len(data.val):,} val tokens)",
        "model": f"GPT-2 style, n_layer {gpt.n_layer}, n_head {gpt.n_head}, n_embd {gpt.n_embd}, "
                 f"block_size {gpt.block_size}, vocabulary {vocab}",
        "budget": f"{train.steps:,} steps x {train.batch_size} x {gpt.block_size} = {tokens:,} tokens per run; "
                  f"AdamW lr {train.lr:g} (warmup {train.warmup_steps}, cosine to {train.min_lr:g}); val loss "
                  f"every {train.eval_every} steps on {train.eval_steps} x {train.batch_size} fixed windows",
        "seeds": ", ".join(map(str, spec.seeds)),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=CONFIGS, default="cpu-embedded")
    parser.add_argument("--data", nargs="+", default=None,
                        help="prepared folder (train.bin, val.bin) or raw text files; default: embedded stories")
    parser.add_argument("--val", nargs="+", default=None, help="validation text files (with raw --data)")
    parser.add_argument("--out", default="runs/ablate_mlp_activation")
    parser.add_argument("--activations", nargs="+", default=list(MLP_ACTIVATIONS), choices=MLP_ACTIVATIONS)
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's steps per run")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--machine", default=None, help="how to name this machine in the report")
    parser.add_argument("--progress", action="store_true", help="a progress bar per run")
    return parser.parse_args(argv)


@run_cli
def main(argv=None) -> None:
    args = parse_args(argv)
    gpt, train, compact = CONFIGS[args.config]
    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size)) if v is not None}
    if any(v < 1 for v in overrides.values()) or args.seeds < 1:
        raise UserError(f"--steps, --batch-size and --seeds must be positive, got {overrides} and {args.seeds}")
    train = dataclasses.replace(train, **overrides)
    spec = AblationConfig(gpt, train, tuple(args.activations), tuple(range(args.seeds)), compact_vocab=compact)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = prepare_data(args.data, args.val, out)
    # Every seed of an activation compiles the same program: a disk cache makes that one compile.
    jax.config.update("jax_compilation_cache_dir", str(out / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    info = describe(args.config, args.machine, spec, data_dir)

    def report(results):
        wall = f"{sum(r['wall_s'] for r in results):,.0f} s over {len(results)} runs, compilation included"
        write_report(results, out, dict(info, wall_time=wall))

    results = run_ablation(spec, data_dir, out, show_progress=args.progress, on_result=report)
    report(results)
    print(f"{out}/results.md, results.json, val_loss.png written ({len(results)} runs)")


if __name__ == "__main__":
    main()
