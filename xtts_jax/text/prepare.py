"""Tokenise text corpora into ``train.bin`` / ``val.bin`` (uint16 GPT-2 ids, memory-mapped as in nanoGPT).

Within a split, documents are joined by ``<|endoftext|>`` (id 50256): ``decode(train.bin)`` equals
``"<|endoftext|>".join(train documents)``. Documents are encoded with ``encode_ordinary``, so a literal
"<|endoftext|>" inside a story stays text and 50256 only ever marks a boundary.

The validation split takes the documents i of the stream where ``i * f`` reaches a new integer (the first,
then about every 1/f-th), so it is deterministic, exactly ``floor((n - 1) * f) + 1`` of n documents, and
spread over all sources, without knowing n before the end of a streamed 2 GB file; or it is
given as separate files (``val_sources``, e.g. ``TinyStories-valid.txt``). A ``meta.json`` sidecar records
the tokenizer, token and document counts, and sources. Files are written under temporary names and renamed
at the end, so an interrupted run never leaves a half-written ``train.bin`` that looks finished.

    python -m xtts_jax.text.prepare TinyStories-train.txt --val TinyStories-valid.txt --out data/tinystories
    python -m xtts_jax.text.prepare --embedded --out data/stories
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import itertools
import json
import multiprocessing
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from xtts_jax.errors import UserError, run_cli
from xtts_jax.text import corpus, stories
from xtts_jax.text.tokenizer import EOT_ID, VOCAB_SIZE, gpt2_encoding

CHUNK_DOCUMENTS = 1024
DEFAULT_VAL_FRACTION = 0.01
SPLITS = ("train", "val")


def is_val(indices: np.ndarray, val_fraction: float) -> np.ndarray:
    """Which document indices go to validation: those where ``i * f`` reaches a new integer."""
    return np.floor(indices * val_fraction) > np.floor((indices - 1) * val_fraction)


def tokenize_chunk(start: int, documents: list[str], val_fraction: float) -> dict[str, tuple[np.ndarray, int]]:
    """Token ids of ``documents`` (indices ``start...`` in the stream), per split, each document preceded by EOT.

    Returns ``{split: (uint16 ids, number of documents)}``; the writer drops the first EOT of each split.
    """
    enc = gpt2_encoding()
    encoded = [enc.encode_ordinary(doc) for doc in documents]
    val = is_val(np.arange(start, start + len(documents)), val_fraction)
    out = {}
    for split, mask in (("train", ~val), ("val", val)):
        pieces = [np.asarray([EOT_ID] + ids, dtype=np.uint16) for ids, m in zip(encoded, mask) if m]
        out[split] = (np.concatenate(pieces) if pieces else np.zeros(0, np.uint16), len(pieces))
    return out


def _chunks(streams: Iterable[tuple[Iterator[str], float]]) -> Iterator[tuple[int, list[str], float]]:
    """(start index, documents, val fraction) for each chunk; indices restart for every stream."""
    for documents, val_fraction in streams:
        for start in itertools.count(0, CHUNK_DOCUMENTS):
            chunk = list(itertools.islice(documents, CHUNK_DOCUMENTS))
            if not chunk:
                break
            yield start, chunk, val_fraction


def _tokenized(chunks: Iterator[tuple[int, list[str], float]], workers: int) -> Iterator[dict]:
    """Results of ``tokenize_chunk`` in order, from ``workers`` processes with a bounded queue."""
    if workers <= 1:
        yield from (tokenize_chunk(*c) for c in chunks)
        return
    # spawn, not fork: the caller may have JAX (multithreaded) loaded. At most 2 chunks per worker are in
    # flight, so a 2 GB corpus is never read into memory ahead of the tokenisers (Pool.imap would).
    with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: list[cf.Future] = []
        for c in chunks:
            pending.append(pool.submit(tokenize_chunk, *c))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def _write(streams, source_info: list[dict], out_dir: Path, workers: int, progress: bool, val_fraction,
           total: int | None = None) -> dict:
    """Tokenise ``streams`` of (documents, val fraction) into ``out_dir``; returns the sidecar dict."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = {s: out_dir / f"{s}.bin.tmp" for s in SPLITS}
    tokens = {s: 0 for s in SPLITS}
    docs = {s: 0 for s in SPLITS}
    gpt2_encoding()  # fail on a missing tokenizer before reading anything
    try:
        with open(tmp["train"], "wb") as f_train, open(tmp["val"], "wb") as f_val:
            files = {"train": f_train, "val": f_val}
            bar = tqdm(total=total, unit=" docs", disable=not progress, desc=f"tokenizing ({workers} workers)")
            for result in _tokenized(_chunks(streams), workers):
                for split, (ids, n) in result.items():
                    if n and docs[split] == 0:
                        ids = ids[1:]  # EOT goes between documents, not before the first
                    ids.tofile(files[split])
                    tokens[split] += len(ids)
                    docs[split] += n
                bar.set_postfix(tokens=f"{tokens['train'] + tokens['val']:,}", refresh=False)
                bar.update(result["train"][1] + result["val"][1])
            bar.close()
        if docs["train"] == 0:
            raise UserError(f"the corpus gave no training documents ({docs['val']} went to validation); "
                            "give more documents or a smaller val_fraction")
    except BaseException:
        # Leave the previous train.bin / val.bin of out_dir as they were.
        for path in tmp.values():
            path.unlink(missing_ok=True)
        raise
    meta = {
        "tokenizer": "gpt2", "vocab_size": VOCAB_SIZE, "eot_id": EOT_ID, "dtype": "uint16",
        "separator": "<|endoftext|> between documents", "val_fraction": val_fraction,
        **{split: {"file": f"{split}.bin", "tokens": tokens[split], "documents": docs[split]} for split in SPLITS},
        "sources": source_info,
    }
    (out_dir / "meta.json.tmp").write_text(json.dumps(meta, indent=2) + "\n")
    for split in SPLITS:
        os.replace(tmp[split], out_dir / f"{split}.bin")
    os.replace(out_dir / "meta.json.tmp", out_dir / "meta.json")
    return meta


def _file_stream(paths: list[Path], format: str, info: list[dict], split: str) -> Iterator[str]:
    """Documents of all ``paths`` in order, counting each file's documents into ``info``."""
    for path in paths:
        entry = {"path": str(path), "format": format if format != "auto" else corpus.detect_format(path),
                 "split": split, "documents": 0}
        info.append(entry)
        for doc in corpus.read_documents(path, entry["format"]):
            entry["documents"] += 1
            yield doc


def _check(val_fraction: float, workers: int | None) -> int:
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction {val_fraction} must be in [0, 1)")
    if workers is not None and workers < 1:
        raise UserError(f"workers {workers} must be at least 1")
    return workers or max(1, min(8, (os.cpu_count() or 1) - 1))


def prepare(sources, out_dir, val_fraction: float = DEFAULT_VAL_FRACTION, workers: int | None = None,
            format: str = "auto", val_sources=None, progress: bool = True) -> dict:
    """Tokenise corpus files (or folders of them) into ``out_dir/{train,val}.bin`` and ``meta.json``.

    With ``val_sources``, validation is exactly those files and ``val_fraction`` is ignored.
    ``format`` overrides detection for every file (see ``xtts_jax.text.corpus``). Returns the sidecar dict.
    """
    workers = _check(val_fraction, workers)
    train_paths = corpus.expand_sources(sources)
    val_paths = corpus.expand_sources(val_sources) if val_sources is not None else []
    for path in train_paths + val_paths:
        corpus.read_documents(path, format)  # missing/empty files fail now, before anything is written
    info: list[dict] = []
    streams = [(_file_stream(train_paths, format, info, "train+val" if not val_paths else "train"),
                0.0 if val_paths else val_fraction)]
    if val_paths:
        streams.append((_file_stream(val_paths, format, info, "val"), 1.0))
    return _write(streams, info, Path(out_dir), workers, progress, None if val_paths else val_fraction)


def prepare_embedded(out_dir, n_stories: int = stories.DEFAULT_N_STORIES, seed: int = 0,
                     val_fraction: float = DEFAULT_VAL_FRACTION, workers: int | None = None,
                     progress: bool = True) -> dict:
    """Generate the embedded story corpus (``xtts_jax.text.stories``) and tokenise it into ``out_dir``."""
    workers = _check(val_fraction, workers)
    if n_stories < 2:
        raise UserError(f"n_stories {n_stories} must be at least 2 (one for training, one for validation)")
    info = [{"embedded": "xtts_jax.text.stories", "seed": seed, "n_stories": n_stories,
             "split": "train+val", "documents": n_stories}]
    streams = [(stories.generate_stories(seed, n_stories), val_fraction)]
    return _write(streams, info, Path(out_dir), workers, progress, val_fraction, total=n_stories)


@run_cli
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", help="corpus files or folders (.txt, .json, .jsonl)")
    parser.add_argument("--out", required=True, help="output folder for train.bin, val.bin, meta.json")
    parser.add_argument("--val", nargs="+", default=None, help="validation files (else a fraction of sources)")
    parser.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION)
    parser.add_argument("--format", choices=corpus.FORMATS, default="auto")
    parser.add_argument("--workers", type=int, default=None, help="tokenizer processes (default: cores - 1)")
    parser.add_argument("--embedded", action="store_true", help="generate and prepare the embedded story corpus")
    parser.add_argument("--n-stories", type=int, default=stories.DEFAULT_N_STORIES)
    parser.add_argument("--seed", type=int, default=0, help="seed of the embedded corpus")
    args = parser.parse_args(argv)
    if args.embedded == bool(args.sources):
        raise UserError("give corpus files or --embedded (exactly one of them)")
    if args.embedded:
        meta = prepare_embedded(args.out, args.n_stories, args.seed, args.val_fraction, args.workers)
    else:
        meta = prepare(args.sources, args.out, args.val_fraction, args.workers, args.format, args.val)
    print(f"{args.out}: train {meta['train']['tokens']:,} tokens in {meta['train']['documents']:,} documents, "
          f"val {meta['val']['tokens']:,} tokens in {meta['val']['documents']:,} documents")


if __name__ == "__main__":
    main()
