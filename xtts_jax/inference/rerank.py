"""Best of N: sample several code sequences per sentence and keep the one the code recogniser
(``models/recognizer.py``) reads as the sentence's own tokens most surely.

The candidates of one batch are sampled together (a row per candidate), scored together by the
recogniser's CTC loss per label against the sentence's spoken tokens, and the lowest wins; ties go
to the earliest candidate, so one candidate is plain sampling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xtts_jax.errors import UserError
from xtts_jax.models import recognizer as rec
from xtts_jax.models.alignment import spoken_tokens

MAX_CANDIDATES = 16
RECOGNIZER_FILE = "recognizer.safetensors"  # beside a tts.safetensors that ships one


def check_candidates(n: int, recognizer: rec.CodeRecognizer | None) -> int:
    if not isinstance(n, int) or not 1 <= n <= MAX_CANDIDATES:
        raise UserError(f"candidates {n!r} must be a whole number in [1, {MAX_CANDIDATES}]")
    if n > 1 and recognizer is None:
        raise UserError(f"{n} candidates need a recogniser to choose among them ({RECOGNIZER_FILE} beside the "
                        "checkpoint, from recipes/train_recognizer.py); pass --candidates 1")
    return n


def recognizer_beside(checkpoint: str | Path, candidates: int) -> rec.CodeRecognizer | None:
    """The recogniser shipped beside a checkpoint when ``candidates`` > 1 need one (None when there
    is none, or one candidate needs no choosing)."""
    path = Path(checkpoint).with_name(RECOGNIZER_FILE)
    return rec.load_recognizer(str(path)) if candidates > 1 and path.is_file() else None


class Reranker:
    """Scores candidates of text-token rows for the generator with config ``tts_cfg``."""

    def __init__(self, recognizer: rec.CodeRecognizer, tts_cfg):
        cfg = recognizer.config
        if cfg.num_audio_codes != tts_cfg.num_audio_codes or cfg.num_labels != tts_cfg.text_vocab_size:
            raise UserError(f"the recogniser reads {cfg.num_audio_codes} codes into {cfg.num_labels} text tokens; "
                            f"the generator has {tts_cfg.num_audio_codes} and {tts_cfg.text_vocab_size}")
        self.model = recognizer
        self.spoken = spoken_tokens(tts_cfg)
        self._score = jax.jit(rec.ctc_per_label)
        # one width for every sentence (the model's positions, in powers of two): one compiled program
        # per batch size, so a warm process never compiles again for a longer sentence (a compile costs
        # about 0.6 s on 2 cores; scoring 4 rows at these widths about 17 ms)
        self.code_width = _power_of_two(tts_cfg.audio_positions, 64)
        self.label_width = _power_of_two(tts_cfg.text_positions, 32)

    def labels(self, row: Sequence[int]) -> list[int]:
        return [t for t in row if self.spoken[t]]

    def scores(self, codes: Sequence[Sequence[int]], rows: Sequence[Sequence[int]]) -> np.ndarray:
        """CTC loss per label of each code sequence against its text row (inf for no codes, or a
        row with no spoken token: nothing to read)."""
        labels = [self.labels(r) for r in rows]
        c, c_len = rec.pad_rows([list(x) for x in codes], self.code_width)
        lab, lab_len = rec.pad_rows(labels, self.label_width)
        s = np.asarray(self._score(self.model, jnp.asarray(c), jnp.asarray(c_len), jnp.asarray(lab), jnp.asarray(lab_len)))
        return np.where((c_len > 0) & (lab_len > 0), s, np.inf)

    def choose(self, candidates: Sequence[Sequence[Sequence[int]]], rows: Sequence[Sequence[int]]) -> list[int]:
        """Index of the best candidate for each row: ``candidates[i]`` are row i's code sequences."""
        flat = [c for cs in candidates for c in cs]
        flat_rows = [r for r, cs in zip(rows, candidates) for _ in cs]
        s = self.scores(flat, flat_rows) if flat else np.zeros(0)
        picks, at = [], 0
        for cs in candidates:
            picks.append(int(np.argmin(s[at:at + len(cs)])) if len(cs) else 0)
            at += len(cs)
        return picks


def _power_of_two(n: int, least: int) -> int:
    return max(least, 1 << (max(n, 1) - 1).bit_length())
