"""The open-vocabulary front end: text read aloud in words, then CMUdict phonemes or letters."""

import numpy as np
import pytest

from xtts_jax.errors import UserError
from xtts_jax.text import phonemes as P
from xtts_jax.text.normalize import spell_out


@pytest.mark.parametrize("written, spoken", [
    ("Mr. Smith paid $40.50 at 9:30, 15% off!", "mister Smith paid forty dollars fifty cents at nine thirty, fifteen percent off!"),
    ("It costs $1.", "It costs one dollar."),
    ("Call 555-0123 now.", "Call five five five, zero one two three now."),
    ("In 1998, 2,500 people came on March 3rd.", "In nineteen ninety-eight, two thousand five hundred people came on March third."),
    ("Agent 007 left at 10:05 a.m.", "Agent zero zero seven left at ten oh five am"),
    ("Pi is 3.14 & more", "Pi is three point one four and more"),
    ("No numbers here.", "No numbers here."),
])
def test_spell_out(written, spoken):
    assert spell_out(written) == spoken


def test_dictionary_words_become_their_first_cmudict_pronunciation():
    assert P.phonemize("Please call!") == ["P", "L", "IY1", "Z", " ", "K", "AO1", "L", "!"]
    # digits, capitals and punctuation: any everyday sentence is read
    assert P.decode(P.encode("At 9, CALL me?")) == "AE1 T | N AY1 N , | K AO1 L | M IY1 ?"
    assert P.phonemize("Tom's") == ["T", "AA1", "M", "Z"]  # CMUdict lacks it: the name plus the possessive


def test_unknown_words_are_spelled_and_training_spells_a_share_of_known_ones():
    assert P.phonemize("zorbly") == ["<z>", "<o>", "<r>", "<b>", "<l>", "<y>"]
    assert P.phonemize("Café naïve") == P.phonemize("cafe naive")  # accents folded
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)
    spelled = P.phonemize(text, spell_fraction=0.25, rng=np.random.default_rng(0))
    words = " ".join(spelled).split("   ")  # symbols joined by spaces; a boundary symbol is a space
    share = np.mean([w.startswith("<") for w in words])
    assert 0.15 < share < 0.35, share
    assert P.phonemize(text, spell_fraction=0.25, rng=np.random.default_rng(0)) == spelled  # seeded


def test_ids_and_vocabulary():
    ids = P.encode("Hello there, world.")
    assert all(0 < i < P.VOCAB_SIZE for i in ids) and P.STOP_ID == 0
    assert len(set(P.SYMBOLS)) == P.VOCAB_SIZE == 4 + 2 + 15 * 3 + 24 + 26


@pytest.mark.parametrize("text, named", [("I love 😀 pizza", "'😀'"), ("Привет", "'П'"), ("日本", "'日'")])
def test_characters_no_reader_could_say_are_refused_by_name(text, named):
    with pytest.raises(UserError, match=named):
        P.encode(text)


def test_nothing_to_say_is_refused():
    with pytest.raises(UserError, match="nothing to say"):
        P.encode("(...)")


def test_every_held_out_sentence_is_read_without_spelling():
    from pathlib import Path

    import xtts_jax.eval

    sentences = (Path(xtts_jax.eval.__file__).parent / "heldout_sentences.txt").read_text().splitlines()
    for s in sentences:
        assert not any(sym.startswith("<") for sym in P.phonemize(s)), s
