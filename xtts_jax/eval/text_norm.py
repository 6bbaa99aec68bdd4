"""Text normalisation for error rates: the reference and the recogniser's transcript are put in
the same written form before words are compared, so "9" and "nine", "Mr." and "mister", "40%"
and "forty percent" count as the same words.

Whisper writes numbers as digits, times as "9:30", money as "$40"; our references spell them as a
person reads them. Both sides are spelled out by the same reader the TTS front end uses
(:func:`xtts_jax.text.normalize.spell_out`), then case-folded, stripped of punctuation and of a few
spelling variants. The rules are few and English only; they follow the spirit of Whisper's
English normaliser (Radford et al. 2022, appendix C), not its code.
"""

from __future__ import annotations

import re

from xtts_jax.text.normalize import spell_out

SPELLING = {"okay": "ok", "alright": "all right", "grey": "gray", "theatre": "theater", "centre": "center",
            "colour": "color", "favourite": "favorite", "neighbour": "neighbor", "neighbours": "neighbors"}


def normalize_text(text: str) -> str:
    """The comparable form of ``text``: lower-case words of letters and apostrophes, single spaces.

    >>> normalize_text("Mr. Smith paid $40.50 at 9:30 -- 15% off!")
    'mister smith paid forty dollars fifty cents at nine thirty fifteen percent off'
    """
    t = spell_out(text.replace("\u2013", " ").replace("\u2014", " ")).lower()
    t = re.sub(r"\bo'clock\b", " ", t)  # "nine o'clock" and "9:00" both read "nine"
    t = re.sub(r"[^a-z' ]+", " ", t.replace("-", " "))  # punctuation, and num2words' hyphens
    words = (w.strip("'") for w in t.split())
    return " ".join(SPELLING.get(w, w) for w in words if w)
