"""A compact text vocabulary: the GPT-2 ids a corpus actually uses, renumbered 0..n-1.

A small model trained on a narrow corpus (the embedded stories, a CPU TTS demo) then carries a
table of a few hundred rows instead of GPT-2's 50,257. The text LM (``xtts_jax.train.lm``) and the
TTS model (``TTSConfig.text_vocab``) share it.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from xtts_jax.errors import UserError


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

    def to_compact(self, tokens: np.ndarray, drop_unknown: bool = False) -> np.ndarray:
        """Compact ids of GPT-2 ``tokens``; an id outside the vocabulary is a UserError (or dropped,
        for a 1-D prompt, with ``drop_unknown``)."""
        tokens = np.asarray(tokens)
        table = self._table
        inside = tokens < len(table)
        out = np.where(inside, table[np.where(inside, tokens, 0)], -1)
        if (out < 0).any():
            if drop_unknown and out.ndim == 1:
                return out[out >= 0]
            bad = int(tokens[out < 0].flat[0])
            raise UserError(f"token id {bad} does not occur in the corpus this model's vocabulary was built from")
        return out

    def to_gpt2(self, tokens: np.ndarray) -> np.ndarray:
        return np.asarray(self.ids, np.int64)[np.asarray(tokens)]
