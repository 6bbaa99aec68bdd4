"""Text normalisation for error rates: the reference and the recogniser's transcript are put in
the same written form before words are compared, so "9" and "nine", "Mr." and "mister", "40%"
and "forty percent" count as the same words.

Whisper writes numbers as digits, times as "9:30", money as "$40"; our references spell them as a
person would read them. Both sides go through :func:`normalize_text`: case folded, numbers spelled
out (num2words), symbols read as words, punctuation dropped. The rules are few and English only;
they follow the spirit of Whisper's English normaliser (Radford et al. 2022, appendix C), not its
code.
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor",
                 "vs": "versus", "etc": "et cetera", "jr": "junior", "sr": "senior"}
SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "°": " degrees "}
SPELLING = {"okay": "ok", "alright": "all right", "grey": "gray", "theatre": "theater",
            "centre": "center", "colour": "color", "favourite": "favorite", "neighbour": "neighbor",
            "neighbours": "neighbors"}
CURRENCY = {"$": "dollars", "£": "pounds", "€": "euros"}


def _number(digits: str) -> str:
    """Spoken form of a digit string: a year-like 4-digit number as a year, else a cardinal."""
    n = int(digits)
    if len(digits) == 4 and 1100 <= n <= 2099 and n % 1000 >= 10:  # "1999" -> nineteen ninety-nine
        return num2words(n, to="year")
    return num2words(n).replace(" and ", " ")  # "four hundred twelve", as Americans read it


def _time(m: re.Match) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    spoken = num2words(hours)
    if minutes == 0:
        return f" {spoken} "  # "9:00" is read "nine" (o'clock is dropped on both sides)
    return f" {spoken} {'oh ' if minutes < 10 else ''}{num2words(minutes)} "


def _money(m: re.Match) -> str:
    symbol, whole, cents = m.group(1), m.group(2).replace(",", ""), m.group(3)
    words = f"{_number(whole)} {CURRENCY[symbol]}"
    if cents and int(cents):
        words += f" {num2words(int(cents))} cents"
    return f" {words} "


def normalize_text(text: str) -> str:
    """The comparable form of ``text``: lower-case words of letters and apostrophes, single spaces.

    >>> normalize_text("Mr. Smith paid $40.50 at 9:30 -- 15% off!")
    'mister smith paid forty dollars fifty cents at nine thirty fifteen percent off'
    """
    t = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    t = t.replace("\u2013", " ").replace("\u2014", " ").lower()
    t = re.sub(r"\b(a|p)\.\s?m\.", r"\1m", t)  # a.m. / p.m.
    t = re.sub(r"\bo'clock\b", " ", t)  # "nine o'clock" and "9:00" both read "nine"
    t = re.sub(r"([$£€])\s?(\d[\d,]*)(?:\.(\d{2}))?\b", _money, t)
    t = re.sub(r"\b(\d{1,2}):(\d{2})\b", _time, t)
    t = re.sub(r"(\d),(?=\d{3}\b)", r"\1", t)  # 7,412 -> 7412
    t = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: f" {num2words(int(m.group(1)), to='ordinal')} ", t)
    t = re.sub(r"\b(\d+)\.(\d+)\b", lambda m: f" {num2words(int(m.group(1)))} point {' '.join(num2words(int(d)) for d in m.group(2))} ", t)
    t = re.sub(r"\d+", lambda m: f" {_number(m.group(0))} ", t)
    for symbol, words in SYMBOLS.items():
        t = t.replace(symbol, words)
    t = re.sub(r"\b([a-z]+)\.", lambda m: ABBREVIATIONS.get(m.group(1), m.group(1)) + " ", t)
    t = re.sub(r"[^a-z' ]+", " ", t.replace("-", " "))  # punctuation (and num2words' hyphens, commas)
    words = []
    for w in t.split():
        w = w.strip("'")
        if w:
            words.append(SPELLING.get(w, w))
    return " ".join(" ".join(words).split())
