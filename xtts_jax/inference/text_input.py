"""The text a generator reads: a text cut into sentences, and each sentence as a row of text tokens
``[start, ..., stop]`` in the model's tokenizer (GPT-2 BPE, its compact table, XTTS-v2's, or phonemes)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np

from xtts_jax.errors import UserError
from xtts_jax.models.tts_config import TTSConfig
from xtts_jax.text import phonemes, tokenizer
from xtts_jax.text.vocab import VocabMap, refuse_unknown


def split_sentences(text: str, max_chars: int | None = None) -> list[str]:
    """Sentences of ``text``: cut after . ! ? ; (and runs of them) followed by white space; a
    sentence longer than ``max_chars`` is wrapped at word boundaries into pieces of at most
    ``max_chars`` (as XTTS-v2's ``split_sentence`` does with its per-language character limit)."""
    text = " ".join(text.split())
    sentences = [s.strip() for s in re.split(r"(?<=[.!?;])\s+", text) if s.strip()]
    if max_chars is None:
        return sentences
    return [piece for s in sentences
            for piece in (textwrap.wrap(s, width=max_chars, break_on_hyphens=False) if len(s) > max_chars else [s])]


def load_text_tokenizer(path: str | Path, cfg: TTSConfig):
    """The XTTS-v2 tokenizer a checkpoint carries (metadata ``xtts_tokenizer``), or None for the
    GPT-2 BPE."""
    if cfg.tokenizer != "xtts":
        return None
    from xtts_jax.text.xtts_tokenizer import XttsTokenizer
    from xtts_jax.weights import read_safetensors_metadata

    vocab = read_safetensors_metadata(path, "TTS checkpoint").get("xtts_tokenizer")
    if vocab is None:
        raise UserError(f"{path} reads XTTS-v2 text tokens but carries no tokenizer; convert the whole XTTS-v2 "
                        "folder (model.pth with vocab.json beside it) with tools/convert_xtts.py")
    return XttsTokenizer.from_str(vocab)


def text_tokens(sentence: str, cfg: TTSConfig, tokenizer=None, language: str = "en",
                spell_fraction: float = 0.0, rng: np.random.Generator | None = None) -> list[int]:
    """``[start, tokens..., stop]`` for one sentence, or a UserError if a token is unknown or it
    cannot fit the text positions. GPT-2 BPE (renumbered into ``cfg.text_vocab`` when the model
    has a compact table), ``tokenizer`` (an XTTS-v2 ``XttsTokenizer``) in ``language``, or
    phonemes (``text.phonemes``; ``spell_fraction`` and ``rng``: training's spelled words)."""
    if cfg.tokenizer == "xtts":
        if tokenizer is None:
            raise UserError("this model reads XTTS-v2 text tokens: load its tokenizer with load_text_tokenizer")
        ids = tokenizer.encode(sentence, language)
    elif cfg.tokenizer == "phonemes":
        ids = phonemes.encode(sentence, spell_fraction, rng)
    else:
        ids = _gpt2_ids(sentence, cfg)
    if len(ids) + 2 > cfg.text_positions:
        raise UserError(f"a sentence of {len(ids)} tokens is longer than the model's {cfg.text_positions - 2}: "
                        f"{sentence[:40]!r}...; add sentence punctuation")
    return [cfg.text_start_token, *ids, cfg.text_stop_token]


def _gpt2_ids(sentence: str, cfg: TTSConfig) -> list[int]:
    if cfg.text_vocab:
        return VocabMap(cfg.text_vocab).encode(sentence).tolist()
    ids = np.asarray(tokenizer.encode(sentence, allow_eot=False), np.int64)
    refuse_unknown(sentence, ids, ids >= cfg.text_vocab_size, f"this model's {cfg.text_vocab_size}-token vocabulary")
    return ids.tolist()
