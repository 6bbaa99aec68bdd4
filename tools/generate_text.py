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
from xtts_jax.errors import run_cli  # noqa: E402


def load_lm(args):
    """(model, task) from ``--checkpoint`` (trainer export, config in its metadata) or ``--hf``."""
    from xtts_jax.train.lm import LMTask, load_lm

    if args.hf:
        from xtts_jax.convert.hf_gpt2 import load_hf_gpt2

        model = load_hf_gpt2(args.hf)
        return model, LMTask(model.config)
    return load_lm(args.checkpoint)


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

    model, task = load_lm(args)
    start = time.perf_counter()
    texts = task.sample(model, jax.random.key(args.seed), args.prompt or ["Once upon a time"],
                        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                        top_p=args.top_p, repetition_penalty=args.repetition_penalty)
    seconds = time.perf_counter() - start
    for text in texts:
        print(text)
        print("-" * 40)
    print(f"sampled in {seconds:.2f} s (the first call includes compilation)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    main()
