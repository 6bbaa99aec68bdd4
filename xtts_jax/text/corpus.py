"""Readers that turn text corpora on disk into a stream of documents (one ``str`` per story).

Formats, by the name ``read_documents`` takes:

- ``"eot"``: text with documents separated by ``<|endoftext|>`` (TinyStories ``TinyStories-train.txt``,
  ``TinyStoriesV2-GPT4-train.txt``: the marker sits on its own line between stories).
- ``"json"``: a JSON list of objects with a ``story`` field (TinyStories ``TinyStories_all_data/data00.json``);
  a ``text`` field is accepted too.
- ``"jsonl"``: one JSON object per line with a ``text`` field (a ``story`` field is accepted too).
- ``"text"``: plain text, documents separated by one or more blank lines.

``"auto"`` picks by extension (``.json``, ``.jsonl``) and, for anything else, by whether the first
megabyte holds an ``<|endoftext|>`` marker. Files are streamed line by line (the TinyStories train text
is 1.9 GB), except JSON lists, which must be parsed whole (a TinyStories shard is ~50 MB).
Documents are stripped of surrounding whitespace; empty ones are dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from xtts_jax.errors import UserError
from xtts_jax.text.tokenizer import EOT_TOKEN

FORMATS = ("auto", "eot", "json", "jsonl", "text")
SUFFIXES = (".txt", ".json", ".jsonl", ".text")
_SNIFF_BYTES = 1 << 20


def detect_format(path: Path) -> str:
    """The format name of ``path`` from its extension and, for text files, its first megabyte."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.read(_SNIFF_BYTES)
    if suffix == ".json":
        # A .json file holding one object per line is JSONL under another name.
        return "json" if head.lstrip().startswith("[") else "jsonl"
    return "eot" if EOT_TOKEN in head else "text"


def expand_sources(sources) -> list[Path]:
    """Paths of the files in ``sources`` (files, or folders whose corpus files are taken in sorted order)."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    paths: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not found:
                raise UserError(f"folder {path} holds no corpus files ({', '.join(SUFFIXES)})")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise UserError(f"corpus file {path} does not exist")
    if not paths:
        raise UserError("no corpus files were given")
    return paths


def read_documents(path, format: str = "auto") -> Iterator[str]:
    """Documents of one corpus file, in file order.

    The file is checked now (missing, empty, unknown format -> UserError); documents are read lazily.
    A file that parses but holds no document raises UserError when the stream ends.
    """
    path = Path(path)
    if format not in FORMATS:
        raise UserError(f"corpus format {format!r} is not one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise UserError(f"corpus file {path} does not exist")
    if path.stat().st_size == 0:
        raise UserError(f"corpus file {path} is empty")
    if format == "auto":
        format = detect_format(path)
    reader = {"eot": _read_eot, "json": _read_json, "jsonl": _read_jsonl, "text": _read_text}[format]
    return _nonempty(reader(path), path, format)


def _nonempty(documents: Iterator[str], path: Path, format: str) -> Iterator[str]:
    count = 0
    for doc in documents:
        doc = doc.strip()
        if doc:
            count += 1
            yield doc
    if count == 0:
        raise UserError(f"corpus file {path} holds no documents (read as {format!r})")


def _read_eot(path: Path) -> Iterator[str]:
    lines: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if EOT_TOKEN not in line:
                lines.append(line)
                continue
            # Usually the marker is alone on its line; a marker inside a line splits it too.
            *finished, rest = line.split(EOT_TOKEN)
            for piece in finished:
                lines.append(piece)
                yield "".join(lines)
                lines = []
            lines.append(rest)
    yield "".join(lines)


def _read_text(path: Path) -> Iterator[str]:
    lines: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                lines.append(line)
            elif lines:
                yield "".join(lines)
                lines = []
    yield "".join(lines)


def _field(record, path: Path, where: str) -> str:
    if isinstance(record, dict):
        for key in ("story", "text"):
            if isinstance(record.get(key), str):
                return record[key]
    raise UserError(f"{where} of {path} is not an object with a string 'story' or 'text' field")


def _read_json(path: Path) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"corpus file {path} is not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(records, list):
        raise UserError(f"corpus file {path} holds a JSON {type(records).__name__}, expected a list of stories")
    for i, record in enumerate(records):
        yield _field(record, path, f"item {i}")


def _read_jsonl(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"line {lineno} of {path} is not valid JSON ({e.msg})") from None
            yield _field(record, path, f"line {lineno}")
