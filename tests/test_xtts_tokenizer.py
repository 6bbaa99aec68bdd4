"""XTTS-v2's text tokenizer: coqui's cleaning rules, the same ids as a plain tokenizers call, errors for people.

The expected cleaned strings were worked out by hand from coqui-tts 0.28's rules
(TTS/tts/layers/xtts/tokenizer.py, zh_num2words.py); the vocabulary is a small BPE built here
in XTTS's layout: [STOP] = 0, [UNK] = 1, [SPACE] = 2, then the BPE, [START] and the language tags.
"""

import json
import sys
import types

import pytest
import tokenizers
from tokenizers import models, pre_tokenizers, trainers

from xtts_jax.errors import UserError
from xtts_jax.text import xtts_tokenizer
from xtts_jax.text.xtts_tokenizer import LANGUAGES, XttsTokenizer

# (raw text, language, cleaned text as coqui's rules give it)
CASES = [
    ("Mr. Smith paid $5.50 for 2 apples & 3 pears.", "en",
     "mister smith paid five dollars, fifty cents for two apples and three pears."),
    ("Dr. Jones finished 1st, with 45% of the vote.", "en",
     "doctor jones finished first, with forty-five percent of the vote."),
    ("Email me @ 10:30 on the 22nd.", "en", "email me at ten:thirty on the twenty-second."),
    ('  That\'s 100,000.5 "people", $20 each.  ', "en",
     "that's one hundred thousand point five people, twenty dollars each."),
    ("It costs £3 #1", "en", "it costs three pounds sterling hash one"),
    # Lower-casing comes before the numbers, so num2words' capitals stay; "3." is a German ordinal.
    ("Dr. Müller kam am 3. Mai um 12,5 Uhr & zahlte 20€.", "de",
     "doktor müller kam am dritte mai um zwölf Komma fünf uhr und zahlte zwanzig Euro."),
    ("Mme. Dupont a 14% & le 1er prix.", "fr", "madame dupont a quatorze pour cent et le premier prix."),
    ("Il coûte 20,15€.", "fr", "il coûte vingt euros et quinze centimes."),
    ("Sr. García pagó $20.", "es", "señor garcía pagó veinte dólares."),
    ("Dra. Costa tem 2 gatos.", "pt", "doutora costa tem dois gatos."),
    ("Buongiorno, Sig. Rossi, il 1° posto.", "it", "buongiorno, signore rossi, il primo posto."),
    ("Dzień dobry, P. Kowalski, mam 20€.", "pl", "dzień dobry, pani kowalski, mam dwadzieścia euro."),
    ("Dr. Novák má 14% baterie.", "cs", "doktor novák má čtrnáct procento baterie."),
    ("Здравствуйте Г-н Иванов, 5 минут.", "ru", "здравствуйте господин иванов, пять минут."),
    ("Dhr. Jansen heeft 14% batterij", "nl", "de heer jansen heeft veertien procent batterij"),
    ("Bu 1. test.", "tr", "bu birinci test."),
]
# Chinese: numbers read in characters (counted things with units, long numbers digit by digit), punctuation -> ","
ZH_CASES = [
    ("我有2000个苹果，编号2000。", "我有两千个苹果,编号二零零零,"),
    ("12.5%的人在2023年5月12日来了！", "百分之十二点五的人在二零二三年五月十二日来了,"),
]
EXTRA_WORDS = """the quick brown fox jumps over the lazy dog and then it sleeps in the sun all day long
der schnelle braune fuchs springt über den faulen hund le renard brun saute par dessus le chien
el zorro marrón salta sobre el perro o gato come peixe il gatto mangia il pesce ryba pływa w rzece"""


def build_vocab(path, drop=(), languages=LANGUAGES):
    """A BPE vocab.json in XTTS's layout at ``path``, optionally without some of its special tokens."""
    corpus = [clean for _, _, clean in CASES] + [clean for _, clean in ZH_CASES] + EXTRA_WORDS.splitlines()
    specials = [t for t in ("[STOP]", "[UNK]", "[SPACE]") if t not in drop]
    tokenizer = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # as Tortoise's and XTTS's vocab.json
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, special_tokens=specials))
    tokenizer.add_special_tokens([t for t in ["[START]"] + [f"[{code}]" for code in languages] if t not in drop])
    tokenizer.save(str(path))
    return path


@pytest.fixture(scope="module")
def vocab_path(tmp_path_factory):
    return build_vocab(tmp_path_factory.mktemp("xtts") / "vocab.json")


@pytest.fixture(scope="module")
def tok(vocab_path):
    return XttsTokenizer.from_file(vocab_path)


@pytest.fixture
def fake_pypinyin(monkeypatch):
    """pypinyin stand-in that leaves characters as they are, so the test sees coqui's Chinese normalisation."""
    calls = []

    def pinyin(text, **kwargs):
        calls.append(kwargs)
        return [[c] for c in text]

    module = types.SimpleNamespace(pinyin=pinyin, Style=types.SimpleNamespace(TONE3="TONE3"))
    monkeypatch.setitem(sys.modules, "pypinyin", module)
    return calls


def reference_ids(vocab_path, tag, cleaned):
    return tokenizers.Tokenizer.from_file(str(vocab_path)).encode(tag + cleaned.replace(" ", "[SPACE]")).ids


def test_special_tokens_sit_where_xtts_puts_them(tok, vocab_path):
    reference = tokenizers.Tokenizer.from_file(str(vocab_path))
    assert [reference.token_to_id(t) for t in ("[STOP]", "[UNK]", "[SPACE]")] == [0, 1, 2]
    assert tok.stop_id == 0 and tok.start_id == reference.token_to_id("[START]")
    assert tok.vocab_size == reference.get_vocab_size()


@pytest.mark.parametrize("text, language, cleaned", CASES, ids=[f"{c[1]}:{c[0][:20]}" for c in CASES])
def test_cleaning_and_ids_follow_coqui(tok, vocab_path, text, language, cleaned):
    assert tok.preprocess(text, language) == cleaned
    ids = tok.encode(text, language)
    assert ids == reference_ids(vocab_path, f"[{language}]", cleaned)
    assert ids[0] == tok.tokenizer.token_to_id(f"[{language}]")
    assert 2 in ids  # spaces became [SPACE]


@pytest.mark.parametrize("text, cleaned", ZH_CASES)
def test_chinese_numbers_and_the_zh_cn_tag(tok, vocab_path, fake_pypinyin, text, cleaned):
    assert tok.preprocess(text, "zh") == cleaned
    assert fake_pypinyin[-1] == {"style": "TONE3", "heteronym": False, "neutral_tone_with_five": True}
    ids = tok.encode(text, "zh")
    assert ids == tok.encode(text, "zh-cn") == reference_ids(vocab_path, "[zh-cn]", cleaned)
    assert ids[0] == tok.tokenizer.token_to_id("[zh-cn]")


def test_korean_is_cleaned_then_romanized(tok, monkeypatch):
    monkeypatch.setitem(sys.modules, "ko_speech_tools", types.SimpleNamespace(hangul_romanize=lambda t: f"<{t}>"))
    assert tok.preprocess("배터리 잔량이 14%입니다.", "ko") == "<배터리 잔량이 십사 퍼센트 입니다.>"


def test_language_codes_and_char_limits(tok):
    text = "Dr. Jones finished 1st."
    assert tok.encode(text, "en-US") == tok.encode(text, "en") == tok.encode(text, "EN")
    assert tok.preprocess("Sra. Lima", "pt-BR") == "senhora lima"
    assert sorted(tok.languages) == sorted(["en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar",
                                            "zh-cn", "hu", "ko", "ja", "hi"])
    assert (tok.char_limit("en"), tok.char_limit("pt-BR"), tok.char_limit("ja")) == (250, 203, 71)
    assert tok.char_limit("zh") == tok.char_limit("zh-cn") == 82


def test_decode_round_trip(tok):
    for text, language, cleaned in CASES:
        ids = tok.encode(text, language)
        assert tok.decode(ids) == cleaned
        assert tok.decode([tok.start_id] + ids + [tok.stop_id, 1]) == cleaned


def test_from_str_equals_from_file(tok, vocab_path):
    again = XttsTokenizer.from_str(vocab_path.read_text())
    assert again.encode(CASES[0][0], "en") == tok.encode(CASES[0][0], "en")


def test_unknown_language_lists_the_supported_ones(tok):
    with pytest.raises(UserError, match=r"unknown language 'xx'.*en, es, fr.*zh-cn.*hi"):
        tok.encode("hello", "xx")


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_text(tok, text):
    with pytest.raises(UserError, match="empty"):
        tok.encode(text, "en")


def test_text_with_nothing_left_after_cleaning(tok):
    with pytest.raises(UserError, match="nothing to speak"):
        tok.encode('""', "en")


def test_characters_the_vocabulary_lacks_are_named(tok):
    with pytest.raises(UserError, match="'♥' 'λ'"):
        tok.encode("I ♥ the λ dog", "en")
    # quoted where the first one is, not the whole cleaned text
    with pytest.raises(UserError, match=r"'♥' \(at \.\.\.'[a-z ]+♥[a-z ]+'\.\.\. after cleaning\)"):
        tok.encode("the dog " * 10 + "I ♥ the dog " + "the dog " * 10, "en")


def test_missing_vocab_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        XttsTokenizer.from_file(tmp_path / "vocab.json")


@pytest.mark.parametrize("content", ["not json {", json.dumps({"vocab": {"a": 0}})])
def test_file_that_is_not_a_tokenizers_json(tmp_path, content):
    path = tmp_path / "vocab.json"
    path.write_text(content)
    with pytest.raises(UserError, match="is not a Hugging Face tokenizers JSON file"):
        XttsTokenizer.from_file(path)


@pytest.mark.parametrize("token", ["[START]", "[STOP]", "[SPACE]"])
def test_vocab_without_an_xtts_token(tmp_path, token):
    path = build_vocab(tmp_path / "vocab.json", drop=(token,))
    with pytest.raises(UserError, match=rf"lacks \{token[:-1]}\]"):
        XttsTokenizer.from_file(path)


def test_vocab_without_the_language_tag(tmp_path):
    tok = XttsTokenizer.from_file(build_vocab(tmp_path / "vocab.json", languages=("en",)))
    with pytest.raises(UserError, match=r"no language tag \[de\]"):
        tok.encode("guten tag", "de")


@pytest.mark.parametrize("language, module, package", [
    ("zh", ("pypinyin",), "pypinyin"),
    ("ko", ("ko_speech_tools", "hangul_romanize"), "ko-speech-tools"),
    ("ja", ("cutlet",), "cutlet"),
])
def test_missing_transliteration_package_is_named(tok, monkeypatch, language, module, package):
    for name in module:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    xtts_tokenizer._cutlet.cache_clear()
    with pytest.raises(UserError, match=f"pip install {package}"):
        tok.preprocess("你好 안녕 こんにちは", language)
    xtts_tokenizer._cutlet.cache_clear()


@pytest.mark.parametrize("text, language", [("मेरे पास 14 बैटरी है", "hi"), ("Bylo jich 5.", "cs")])
def test_numbers_num2words_cannot_spell(tok, text, language):
    # num2words has no Hindi and no Czech ordinals; coqui crashes there, we say which number to write out.
    with pytest.raises(UserError, match="num2words cannot spell the number 14|num2words cannot spell the number 5"):
        tok.preprocess(text, language)


def test_decode_refuses_ids_outside_the_vocabulary(tok):
    with pytest.raises(UserError, match=f"token id {tok.vocab_size} is outside"):
        tok.decode([3, tok.vocab_size])
