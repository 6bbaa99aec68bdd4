"""English text as it is read aloud: numbers, times, money, percentages, ordinals and a few
abbreviations spelled out in words (num2words), everything else kept as written.

Two users share it, so that they can never disagree about how "$40" or "9:30" is said: the TTS
front end (``text/phonemes.py``), which must read any sentence, and the evaluation's text
normalisation (``eval/text_norm.py``), which compares a reference with Whisper's transcript (and
Whisper writes digits).
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor", "vs": "versus",
                 "etc": "et cetera", "jr": "junior", "sr": "senior"}
SYMBOLS = {"%": " percent", "&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "°": " degrees",
           "#": " number "}
CURRENCY = {"$": ("dollar", "dollars"), "£": ("pound", "pounds"), "€": ("euro", "euros")}


def cardinal(n: int) -> str:
    """``n`` in words, as Americans say it ("four hundred twelve", no "and")."""
    return num2words(n).replace(" and ", " ").replace(",", "")


def number(digits: str) -> str:
    """A digit string read aloud: a 4-digit number that looks like a year as a year, else a cardinal."""
    n = int(digits)
    if len(digits) == 4 and 1100 <= n <= 2099 and n % 1000 >= 10:  # "1998" -> nineteen ninety-eight
        return num2words(n, to="year")
    if len(digits) > 1 and digits.startswith("0"):  # "007", phone-like strings: digit by digit
        return " ".join(cardinal(int(d)) for d in digits)
    return cardinal(n)


def _time(m: re.Match) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes == 0:
        return cardinal(hours)  # "9:00" is read "nine"
    return f"{cardinal(hours)} {'oh ' if minutes < 10 else ''}{cardinal(minutes)}"


def _money(m: re.Match) -> str:
    singular, plural = CURRENCY[m.group(1)]
    whole, cents = int(m.group(2).replace(",", "")), m.group(3)
    words = f"{number(str(whole))} {singular if whole == 1 else plural}"
    if cents and int(cents):
        words += f" {cardinal(int(cents))} {'cent' if int(cents) == 1 else 'cents'}"
    return words


def _decimal(m: re.Match) -> str:
    return f"{cardinal(int(m.group(1)))} point {' '.join(cardinal(int(d)) for d in m.group(2))}"


def spell_out(text: str) -> str:
    """``text`` with numbers, times, money, percentages, ordinals and abbreviations as words; case,
    punctuation and every other character kept.

    >>> spell_out("Mr. Smith paid $40.50 at 9:30, 15% off!")
    'mister Smith paid forty dollars fifty cents at nine thirty, fifteen percent off!'
    """
    t = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"\b([AaPp])\.\s?[Mm]\.", lambda m: m.group(1).lower() + "m", t)  # a.m. / p.m.
    t = re.sub(r"([$£€])\s?(\d[\d,]*)(?:\.(\d{2}))?\b", _money, t)
    t = re.sub(r"\b(\d{1,2}):(\d{2})\b", _time, t)
    t = re.sub(r"\b\d{3}(?:-\d{3,4})+\b",  # phone numbers, digit by digit: "555-0123"
               lambda m: ", ".join(" ".join(cardinal(int(d)) for d in g) for g in m.group(0).split("-")), t)
    t = re.sub(r"(\d),(?=\d{3}\b)", r"\1", t)  # 7,412 -> 7412
    t = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: num2words(int(m.group(1)), to="ordinal"), t)
    t = re.sub(r"\b(\d+)\.(\d+)\b", _decimal, t)
    t = re.sub(r"\d+", lambda m: f" {number(m.group(0))} ", t)
    for symbol, words in SYMBOLS.items():
        t = t.replace(symbol, words)
    t = re.sub(r"\b([A-Za-z]+)\.(?=\s|$)",
               lambda m: ABBREVIATIONS[m.group(1).lower()] if m.group(1).lower() in ABBREVIATIONS else m.group(0), t)
    return re.sub(r"\s+([,.;:!?])", r"\1", " ".join(t.split()))
