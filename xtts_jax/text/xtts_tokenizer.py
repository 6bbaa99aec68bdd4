"""XTTS-v2's text tokenizer: coqui's cleaning per language, a language tag, ``[SPACE]``, BPE ids.

An XTTS-v2 checkpoint carries ``vocab.json``, a Hugging Face ``tokenizers`` BPE file (6,681 tokens:
``[STOP]`` = 0, ``[UNK]`` = 1, ``[SPACE]`` = 2, ``[START]`` = 261, tags such as ``[en]``, ``[zh-cn]``).
We give the ids that coqui's ``Xtts.inference`` feeds the GPT (coqui-tts 0.28: TTS/tts/models/xtts.py
and ``VoiceBpeTokenizer`` in TTS/tts/layers/xtts/tokenizer.py): ``text.strip().lower()``, then the
language's cleaning (numbers, abbreviations, symbols in that language's words), ``f"[{lang}]{text}"``
with spaces as ``[SPACE]``, and the BPE. The rules, their order and the word tables are coqui's, so
the ids are equal; the Chinese number reading (coqui's ``zh_num2words``) is ``text/zh_numbers.py``.

Chinese, Korean and Japanese need a transliteration package that we do not depend on: pypinyin,
ko-speech-tools (or hangul-romanize), cutlet with unidic-lite.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Iterable

import tokenizers
from num2words import num2words

from xtts_jax.errors import UserError, excerpt
from xtts_jax.text.zh_numbers import chinese_numbers

# XTTS-v2's 17 languages, each with coqui's warning limit in characters (VoiceBpeTokenizer.char_limits).
CHAR_LIMITS = {"en": 250, "es": 239, "fr": 273, "de": 253, "it": 213, "pt": 203, "pl": 224, "tr": 226,
               "ru": 182, "nl": 251, "cs": 186, "ar": 166, "zh": 82, "hu": 224, "ko": 95, "ja": 71, "hi": 150}
LANGUAGES = tuple("zh-cn" if code == "zh" else code for code in CHAR_LIMITS)
REQUIRED_TOKENS = ("[STOP]", "[SPACE]", "[START]")

# Abbreviations, matched case-blind with their dot (Russian: as whole words); the order matters ("mrs" first).
ABBREVIATIONS = {
    "en": {"mrs": "misess", "mr": "mister", "dr": "doctor", "st": "saint", "co": "company", "jr": "junior",
           "maj": "major", "gen": "general", "drs": "doctors", "rev": "reverend", "lt": "lieutenant",
           "hon": "honorable", "sgt": "sergeant", "capt": "captain", "esq": "esquire", "ltd": "limited",
           "col": "colonel", "ft": "fort"},
    "es": {"sra": "señora", "sr": "señor", "dr": "doctor", "dra": "doctora", "st": "santo", "co": "compañía",
           "jr": "junior", "ltd": "limitada"},
    "fr": {"mme": "madame", "mr": "monsieur", "dr": "docteur", "st": "saint", "co": "compagnie", "jr": "junior",
           "ltd": "limitée"},
    "de": {"fr": "frau", "dr": "doktor", "st": "sankt", "co": "firma", "jr": "junior"},
    "pt": {"sra": "senhora", "sr": "senhor", "dr": "doutor", "dra": "doutora", "st": "santo", "co": "companhia",
           "jr": "júnior", "ltd": "limitada"},
    "it": {"sig": "signore", "dr": "dottore", "st": "santo", "co": "compagnia", "jr": "junior", "ltd": "limitata"},
    "pl": {"p": "pani", "m": "pan", "dr": "doktor", "sw": "święty", "jr": "junior"},
    "cs": {"dr": "doktor", "ing": "inženýr", "p": "pan"},
    "ru": {"г-жа": "госпожа", "г-н": "господин", "д-р": "доктор"},
    "nl": {"dhr": "de heer", "mevr": "mevrouw", "dr": "dokter", "jhr": "jonkheer"},
    "tr": {"b": "bay", "byk": "büyük", "dr": "doktor"},
    "hu": {"dr": "doktor", "b": "bácsi", "nőv": "nővér"},
}
# Each language's words for these symbols, spoken with a space on each side.
SYMBOLS = "&@%#$£°"
SYMBOL_WORDS = {
    "en": ("and", "at", "percent", "hash", "dollar", "pound", "degree"),
    "es": ("y", "arroba", "por ciento", "numeral", "dolar", "libra", "grados"),
    "fr": ("et", "arobase", "pour cent", "dièse", "dollar", "livre", "degrés"),
    "de": ("und", "at", "prozent", "raute", "dollar", "pfund", "grad"),
    "pt": ("e", "arroba", "por cento", "cardinal", "dólar", "libra", "graus"),
    "it": ("e", "chiocciola", "per cento", "cancelletto", "dollaro", "sterlina", "gradi"),
    "pl": ("i", "małpa", "procent", "krzyżyk", "dolar", "funt", "stopnie"),
    "ar": ("و", "على", "في المئة", "رقم", "دولار", "جنيه", "درجة"),
    "zh": ("和", "在", "百分之", "号", "美元", "英镑", "度"),
    "cs": ("a", "na", "procento", "křížek", "dolar", "libra", "stupně"),
    "ru": ("и", "собака", "процентов", "номер", "доллар", "фунт", "градус"),
    "nl": ("en", "bij", "procent", "hekje", "dollar", "pond", "graden"),
    "tr": ("ve", "at", "yüzde", "diyez", "dolar", "sterlin", "derece"),
    "hu": ("és", "kukac", "százalék", "kettőskereszt", "dollár", "font", "fok"),
    "ko": ("그리고", "에", "퍼센트", "번호", "달러", "파운드", "도"),
    "hi": ("और", "ऐट दी रेट", "प्रतिशत", "हैश", "डॉलर", "पाउंड", "डिग्री"),
}
# A number followed by one of these suffixes is read as an ordinal (coqui's table, alternation order kept).
ORDINALS = {lang: re.compile(pattern) for lang, pattern in {
    "en": r"([0-9]+)(st|nd|rd|th)", "es": r"([0-9]+)(º|ª|er|o|a|os|as)", "fr": r"([0-9]+)(º|ª|er|re|e|ème)",
    "de": r"([0-9]+)(st|nd|rd|th|º|ª|\.(?=\s|$))", "pt": r"([0-9]+)(º|ª|o|a|os|as)",
    "it": r"([0-9]+)(º|°|ª|o|a|i|e)", "pl": r"([0-9]+)(º|ª|st|nd|rd|th)", "ar": r"([0-9]+)(ون|ين|ث|ر|ى)",
    "cs": r"([0-9]+)\.(?=\s|$)", "ru": r"([0-9]+)(-й|-я|-е|-ое|-ье|-го)", "nl": r"([0-9]+)(de|ste|e)",
    "tr": r"([0-9]+)(\.|inci|nci|uncu|üncü|\.)", "hu": r"([0-9]+)(\.|adik|edik|odik|edik|ödik|ödike|ik)",
    "ko": r"([0-9]+)(번째|번|차|째)", "hi": r"([0-9]+)(st|nd|rd|th)",
}.items()}
# For a whole amount, num2words' "... and zero cents" is cut at the last of these.
CURRENCY_AND = {"es": " con ", "fr": " et ", "de": " und ", "pt": " e ", "it": " e "}  # others: ", "
CURRENCIES = (("GBP", re.compile(r"((£[0-9\.\,]*[0-9]+)|([0-9\.\,]*[0-9]+£))")),
              ("USD", re.compile(r"((\$[0-9\.\,]*[0-9]+)|([0-9\.\,]*[0-9]+\$))")),
              ("EUR", re.compile(r"(([0-9\.\,]*[0-9]+€)|((€[0-9\.\,]*[0-9]+)))")))
COMMA_THOUSANDS = re.compile(r"\b\d{1,3}(,\d{3})*(\.\d+)?\b")
# coqui leaves this dot unescaped (any character); only literal dots are removed, and we keep its matches.
DOT_THOUSANDS = re.compile(r"\b\d{1,3}(.\d{3})*(\,\d+)?\b")
DECIMAL = re.compile(r"([0-9]+[.,][0-9]+)")
NUMBER = re.compile(r"[0-9]+")


def language_code(language: str) -> str:
    """coqui's code for a language name: region cut ("en-US" -> "en", "zh-cn" -> "zh"); unknown is an error."""
    code = str(language).strip().lower().split("-")[0]
    if code not in CHAR_LIMITS:
        raise UserError(f"unknown language {language!r}; XTTS-v2 speaks {', '.join(LANGUAGES)}")
    return code


def _spell(value, lang: str, **kwargs) -> str:
    try:
        return num2words(value, lang=lang, **kwargs)
    except Exception as err:  # num2words lacks e.g. Hindi, Czech ordinals; coqui crashes there
        raise UserError(f"num2words cannot spell the number {value} in language {lang!r}; write it in words") from err


def _currency(amount_text: str, lang: str, currency: str) -> str:
    amount = float(re.sub(r"[^\d.]", "", amount_text.replace(",", ".")))
    words = num2words(amount, to="currency", currency=currency, lang=lang)
    if amount.is_integer() and (cut := words.rfind(CURRENCY_AND.get(lang, ", "))) != -1:
        words = words[:cut]
    return words


def expand_numbers(text: str, lang: str) -> str:
    """Digits -> words in ``lang`` (num2words; Chinese: coqui's own reading), as coqui's cleaner."""
    if lang == "zh":
        return chinese_numbers(text)
    if lang in ("en", "ru"):
        text = COMMA_THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), text)
    else:
        text = DOT_THOUSANDS.sub(lambda m: m.group(0).replace(".", ""), text)
    try:
        for currency, pattern in CURRENCIES:
            text = pattern.sub(lambda m, c=currency: _currency(m.group(0), lang, c), text)
    except Exception:  # as coqui: one currency that num2words lacks skips the rest; the digits are read below
        pass
    if lang != "tr":  # coqui reads no Turkish decimals
        text = DECIMAL.sub(lambda m: _spell(float(m.group(1).replace(",", ".")), lang), text)
    text = ORDINALS[lang].sub(lambda m: _spell(int(m.group(1)), lang, ordinal=True), text)
    return NUMBER.sub(lambda m: _spell(int(m.group(0)), lang), text)


def clean(text: str, lang: str) -> str:
    """coqui's ``multilingual_cleaners`` for code ``lang`` (every language but "ja")."""
    text = text.replace('"', "")
    if lang == "tr":
        text = text.replace("İ", "i").replace("Ö", "ö").replace("Ü", "ü")
    # Lower-case before the numbers, so num2words' capitals (German "Komma", "Euro") stay, as in coqui.
    text = expand_numbers(text.lower(), lang)
    for abbreviation, words in ABBREVIATIONS.get(lang, {}).items():
        end = r"\b" if lang == "ru" else r"\."
        text = re.sub(rf"\b{abbreviation}{end}", words, text, flags=re.IGNORECASE)
    for symbol, words in zip(SYMBOLS, SYMBOL_WORDS[lang]):
        text = text.replace(symbol, f" {words} ")
    return re.sub(r"\s+", " ", text).strip()


def preprocess(text: str, language: str) -> str:
    """The text as XTTS-v2 spells it before the language tag: inference's strip + lower, then cleaning."""
    lang = language_code(language)
    if not isinstance(text, str):
        raise UserError(f"the text to speak must be a string, not {type(text).__name__}")
    text = text.strip().lower()
    if not text:
        raise UserError("the text to speak is empty")
    if lang == "ja":  # coqui: romaji from cutlet, lower-cased, and no other cleaning
        return _cutlet().romaji(text).lower()
    text = clean(text, lang)
    if lang == "zh":
        return _pinyin(text)
    if lang == "ko":
        return _romanize_korean(text)
    return text


def _pinyin(text: str) -> str:
    try:
        import pypinyin
    except ImportError as err:
        raise UserError("Chinese text needs the package pypinyin: pip install pypinyin") from err
    # As coqui: tone numbers after each syllable, 5 for the neutral tone, syllables run together.
    syllables = pypinyin.pinyin(text, style=pypinyin.Style.TONE3, heteronym=False, neutral_tone_with_five=True)
    return "".join(s[0] for s in syllables)


def _romanize_korean(text: str) -> str:
    try:  # coqui-tts 0.28 uses ko-speech-tools; older coqui hangul-romanize; both the academic rule
        from ko_speech_tools import hangul_romanize
    except ImportError:
        try:
            from hangul_romanize import Transliter
            from hangul_romanize.rule import academic
        except ImportError as err:
            raise UserError("Korean text needs the package ko-speech-tools: pip install ko-speech-tools") from err
        return Transliter(academic).translit(text)
    return hangul_romanize(text)


@functools.lru_cache(maxsize=1)
def _cutlet():
    try:
        import cutlet
    except ImportError as err:
        raise UserError("Japanese text needs the package cutlet: pip install cutlet unidic-lite") from err
    try:
        return cutlet.Cutlet()
    except RuntimeError as err:  # fugashi finds no dictionary
        raise UserError("Japanese text needs a MeCab dictionary for cutlet: pip install unidic-lite") from err


@dataclasses.dataclass(frozen=True, eq=False)
class XttsTokenizer:
    """An XTTS-v2 ``vocab.json`` and coqui's way to encode text with it."""

    tokenizer: tokenizers.Tokenizer
    source: str = "the vocabulary"

    def __post_init__(self):
        vocab = self.tokenizer.get_vocab()
        if missing := [t for t in REQUIRED_TOKENS if t not in vocab]:
            raise UserError(f"{self.source} lacks {', '.join(missing)}, so it is not an XTTS vocabulary")

    @classmethod
    def from_str(cls, json_text: str, source: str = "the vocabulary JSON") -> "XttsTokenizer":
        """From the text of a ``vocab.json`` (a checkpoint carries it in its metadata)."""
        try:
            tokenizer = tokenizers.Tokenizer.from_str(json_text)
        except Exception as err:  # tokenizers raises a bare Exception for any parse error
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise UserError(f"{source} is not a Hugging Face tokenizers JSON file ({reason})") from err
        return cls(tokenizer, source)

    @classmethod
    def from_file(cls, path: str | Path) -> "XttsTokenizer":
        """From an XTTS-v2 ``vocab.json`` file."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"vocab file {path} {'is not a file' if path.exists() else 'does not exist'}")
        return cls.from_str(path.read_text(encoding="utf-8", errors="replace"), f"vocab file {path}")

    @property
    def start_id(self) -> int:
        """Id of ``[START]``, which opens the text tokens (261 in XTTS-v2)."""
        return self.tokenizer.token_to_id("[START]")

    @property
    def stop_id(self) -> int:
        """Id of ``[STOP]``, which closes the text tokens (0 in XTTS-v2)."""
        return self.tokenizer.token_to_id("[STOP]")

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def languages(self) -> tuple[str, ...]:
        """The language codes this tokenizer cleans ("zh" is accepted for "zh-cn")."""
        return LANGUAGES

    def char_limit(self, language: str) -> int:
        """coqui's length, in characters of raw text, past which XTTS-v2 may cut the audio short."""
        return CHAR_LIMITS[language_code(language)]

    def preprocess(self, text: str, language: str) -> str:
        """The cleaned text that is tokenized after the language tag (see :func:`preprocess`)."""
        return preprocess(text, language)

    def encode(self, text: str, language: str) -> list[int]:
        """Token ids of ``text`` in ``language``: ``[lang]`` tag first, without ``[START]`` / ``[STOP]``."""
        lang = language_code(language)
        cleaned = preprocess(text, language)
        if not cleaned:
            raise UserError(f"the text {text!r} has nothing to speak after cleaning")
        tag = "[zh-cn]" if lang == "zh" else f"[{lang}]"
        if self.tokenizer.token_to_id(tag) is None:
            raise UserError(f"{self.source} has no language tag {tag}")
        tagged = tag + cleaned.replace(" ", "[SPACE]")
        encoding = self.tokenizer.encode(tagged)
        if unknown := self._unknown_characters(tagged, encoding):
            at = cleaned.index(unknown[0])
            raise UserError(f"the vocabulary cannot represent {' '.join(map(repr, unknown))} "
                            f"(at {excerpt(cleaned, at, at + 1)} after cleaning)")
        return encoding.ids

    def _unknown_characters(self, text: str, encoding: tokenizers.Encoding) -> list[str]:
        """Characters of ``text`` that became ``[UNK]`` or no token at all, in order of appearance."""
        unk_id = self.tokenizer.token_to_id("[UNK]")
        covered = [False] * len(text)
        for token_id, (start, end) in zip(encoding.ids, encoding.offsets):
            if token_id != unk_id:
                covered[start:end] = [True] * (end - start)
        return list(dict.fromkeys(c for c, ok in zip(text, covered) if not ok and not c.isspace()))

    @functools.cached_property
    def _marker_ids(self) -> frozenset[int]:
        markers = ("[STOP]", "[UNK]", "[START]") + tuple(f"[{code}]" for code in LANGUAGES)
        return frozenset(i for i in map(self.tokenizer.token_to_id, markers) if i is not None)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids: ``[SPACE]`` -> " "; language tags, ``[START]``, ``[STOP]``, ``[UNK]`` dropped."""
        ids = [int(i) for i in ids]
        if bad := [i for i in ids if not 0 <= i < self.vocab_size]:
            raise UserError(f"token id {bad[0]} is outside the vocabulary [0, {self.vocab_size})")
        kept = [i for i in ids if i not in self._marker_ids]
        # As coqui: without a decoder, tokenizers joins tokens with spaces, which are not text here.
        return self.tokenizer.decode(kept, skip_special_tokens=False).replace(" ", "").replace("[SPACE]", " ")
