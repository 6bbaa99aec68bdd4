"""Command-line sampling flags shared by the synthesis tools.

An unset flag takes the checkpoint's recommendation (``inference.tts.sampling_defaults``: its
metadata key ``sampling``), else XTTS-v2's defaults: temperature 0.75, top-k 50, top-p 0.85,
repetition penalty 10 over the audio tokens generated so far, and one candidate per sentence.
"""

from __future__ import annotations

import argparse

from xtts_jax.inference.sampling import SamplingConfig

FIELDS = ("temperature", "top_k", "top_p", "repetition_penalty")


def add_sampling_flags(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--temperature", type=float, help="0 is greedy (default: the checkpoint's, else 0.75)")
    ap.add_argument("--top-k", type=int, help="0 is off (default: the checkpoint's, else 50)")
    ap.add_argument("--top-p", type=float, help="default: the checkpoint's, else 0.85")
    ap.add_argument("--repetition-penalty", type=float,
                    help="over the audio tokens generated so far (default: the checkpoint's, else 10)")
    ap.add_argument("--candidates", type=int,
                    help="code sequences sampled per sentence, of which the recogniser beside the checkpoint "
                         "keeps the one it reads best (default: the checkpoint's, else 1)")


def sampling_from_flags(args: argparse.Namespace, checkpoint: str, max_new_tokens: int) -> SamplingConfig:
    """The checkpoint's sampling settings with the flags given on the command line on top."""
    from xtts_jax.inference.tts import sampling_defaults

    cfg = sampling_defaults(checkpoint)
    cfg.update({k: getattr(args, k) for k in FIELDS if getattr(args, k) is not None})
    return SamplingConfig(**cfg, max_new_tokens=max_new_tokens)  # validates, with one-line errors


def candidates_from_flags(args: argparse.Namespace, checkpoint: str) -> int:
    """``--candidates``, else the checkpoint's recommendation, else 1."""
    from xtts_jax.inference.tts import candidates_default

    return args.candidates if args.candidates is not None else candidates_default(checkpoint)
