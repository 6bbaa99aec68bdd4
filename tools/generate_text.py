"""Sample text from a trained GPT: a run's exported ``model.safetensors`` or a Hugging Face GPT-2 folder.

    python tools/generate_text.py --checkpoint runs/tinystories/model.safetensors --prompt "Once upon a time"
    python tools/generate_text.py --hf path/to/gpt2 --prompt "Hello" --temperature 0 --max-new-tokens 40

The whole decode loop runs in one jit with a KV cache (xtts_jax/inference/sampling.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xtts_jax.errors import UserError, run_cli  # noqa: E402


def load_lm(args):
    """(model, task) from ``--checkpoint`` (trainer export, config in its metadata) or ``--hf``."""
    from xtts_jax.train.lm import LMTask

    if args.hf:
        from xtts_jax.convert.hf_gpt2 import load_hf_gpt2

        model = load_hf_gpt2(args.hf)
        return model, LMTask(model.config)
    import equinox as eqx

    from xtts_jax.train.checkpoint import load_safetensors, read_model_config

    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "model.safetensors"
    config = read_model_config(str(path), "config", "language-model")
    if not isinstance(config.get("task"), dict) or "gpt" not in config["task"]:
        raise UserError(f"{path} is not a language-model export (recipes/tinystories_pretrain.py writes one)")
    task = LMTask.from_dict(config["task"])
    return load_safetensors(eqx.filter_eval_shape(task.init_model, jax.random.key(0)), str(path)), task


@run_cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="model.safetensors written by the trainer (or its run folder)")
    src.add_argument("--hf", help="a Hugging Face GPT-2 folder (config.json + model.safetensors / pytorch_model.bin)")
    p.add_argument("--prompt", action="append", help="repeat for a batch; default: 'Once upon a time'")
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy")
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from xtts_jax.inference.sampling import SamplingConfig, generate

    model, task = load_lm(args)
    prompts = args.prompt or ["Once upon a time"]
    ids = [task.encode(text).tolist() for text in prompts]
    if any(len(i) == 0 for i in ids):
        raise UserError("a prompt encodes to no known tokens; give some text")
    room = model.config.block_size - max(len(i) for i in ids)
    if room < 1:
        raise UserError(f"the longest prompt fills the model's {model.config.block_size} positions")
    cfg = SamplingConfig(temperature=args.temperature, top_k=min(args.top_k, model.config.vocab_size),
                         top_p=args.top_p, repetition_penalty=args.repetition_penalty,
                         max_new_tokens=min(args.max_new_tokens, room), stop_token=task._eot_id())
    start = time.perf_counter()
    rows = generate(model, ids, jax.random.key(args.seed), cfg)
    seconds = time.perf_counter() - start
    for text, row in zip(prompts, rows):
        print(text + task.decode(row))
        print("-" * 40)
    n = sum(len(r) for r in rows)
    print(f"{n} tokens in {seconds:.2f} s (first call includes compilation)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    main()
