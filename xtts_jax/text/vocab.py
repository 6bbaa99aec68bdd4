"""A compact text vocabulary: the GPT-2 ids a corpus actually uses, renumbered 0..n-1.

A small model trained on a narrow corpus (the embedded stories, a CPU TTS demo) then carries a
table of a few hundred rows instead of GPT-2's 50,257. The text LM (``xtts_jax.train.lm``) and the
TTS model (``TTSConfig.text_vocab``) share it.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from xtts_jax.errors import UserError, excerpt
from xtts_jax.text import tokenizer


@dataclasses.dataclass(frozen=True)
class VocabMap:
    """GPT-2 ids <-> a compact vocabulary of the ids a corpus actually uses (sorted)."""

    ids: tuple[int, ...]

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> "VocabMap":
        return cls(tuple(int(i) for i in np.flatnonzero(counts)))

    @property
    def size(self) -> int:
        return len(self.ids)

    @functools.cached_property
    def _table(self) -> np.ndarray:
        table = np.full(max(self.ids) + 1, -1, np.int32)
        table[np.asarray(self.ids)] = np.arange(self.size, dtype=np.int32)
        return table

    def _lookup(self, tokens: np.ndarray) -> np.ndarray:
        """Compact ids of GPT-2 ``tokens``, -1 where the vocabulary lacks one."""
        tokens = np.asarray(tokens)
        table = self._table
        inside = tokens < len(table)
        return np.where(inside, table[np.where(inside, tokens, 0)], -1)

    def to_compact(self, tokens: np.ndarray, drop_unknown: bool = False) -> np.ndarray:
        """Compact ids of GPT-2 ``tokens``; an id outside the vocabulary is a UserError (or dropped,
        for a 1-D prompt, with ``drop_unknown``)."""
        out = self._lookup(tokens)
        if (out < 0).any():
            if drop_unknown and out.ndim == 1:
                return out[out >= 0]
            bad = int(np.asarray(tokens)[out < 0].flat[0])
            raise UserError(f"token id {bad} does not occur in the corpus this model's vocabulary was built from")
        return out

    def encode(self, text: str, allow_eot: bool = False) -> np.ndarray:
        """Compact ids of ``text``; words whose tokens the vocabulary lacks are a UserError naming
        them as typed."""
        ids = np.asarray(tokenizer.encode(text, allow_eot=allow_eot), np.int64)
        out = self._lookup(ids)
        refuse_unknown(text, ids, out < 0, f"this model's {self.size}-token vocabulary")
        return out

    def to_gpt2(self, tokens: np.ndarray) -> np.ndarray:
        return np.asarray(self.ids, np.int64)[np.asarray(tokens)]


def refuse_unknown(text: str, ids: np.ndarray, unknown: np.ndarray, vocabulary: str) -> None:
    """A UserError naming the words of ``text`` (as typed) that hold the tokens ``unknown`` marks
    among ``ids = tokenizer.encode(text)``, quoting the text around the first; nothing if none."""
    positions = np.flatnonzero(unknown)
    if positions.size == 0:
        return
    words = tokenizer.words_of_tokens(text, ids, positions)
    _, start, end = words[0]
    names = ", ".join(map(repr, dict.fromkeys(w for w, _, _ in words)))
    raise UserError(f"{vocabulary} lacks {names} (at {excerpt(text, start, end)}); "
                    "use the words of the corpus it was trained on")
