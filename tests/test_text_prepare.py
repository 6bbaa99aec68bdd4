"""prepare: token files decode back to the documents joined by <|endoftext|>; sidecar; split; errors."""

import json

import numpy as np
import pytest

from xtts_jax.errors import UserError
from xtts_jax.text import prepare as prep
from xtts_jax.text import stories
from xtts_jax.text.tokenizer import EOT_ID, EOT_TOKEN, decode, encode

EOT_DOCS = ["Tom had a red ball.\n\nHe liked it.", "Lily saw a bird. \"Hi!\" she said.", "Ben ran home."]
JSON_DOCS = ["Once upon a time, a cat wrote <|endoftext|> on a wall.", "Zoë smiled — the end."]
JSONL_DOCS = [f"Story number {i}: the dog jumped {i} times." for i in range(15)]


@pytest.fixture
def sources(tmp_path):
    (tmp_path / "src").mkdir()
    eot = tmp_path / "src" / "stories.txt"
    eot.write_text("\n<|endoftext|>\n".join(EOT_DOCS) + "\n<|endoftext|>\n", encoding="utf-8")
    shard = tmp_path / "src" / "data00.json"
    shard.write_text(json.dumps([{"story": d, "summary": "s"} for d in JSON_DOCS]), encoding="utf-8")
    jsonl = tmp_path / "src" / "more.jsonl"
    jsonl.write_text("".join(json.dumps({"text": d}) + "\n" for d in JSONL_DOCS), encoding="utf-8")
    return [eot, shard, jsonl]


def tokens(path):
    return np.fromfile(path, dtype=np.uint16)


def split_documents(docs, val_fraction):
    val = prep.is_val(np.arange(len(docs)), val_fraction)
    return [d for d, v in zip(docs, val) if not v], [d for d, v in zip(docs, val) if v]


def test_round_trip_sidecar_and_split(tmp_path, sources):
    meta = prep.prepare(sources, tmp_path / "out", val_fraction=0.2, workers=1, progress=False)
    docs = EOT_DOCS + JSON_DOCS + JSONL_DOCS
    train_docs, val_docs = split_documents(docs, 0.2)
    # Documents 0, 5, 10, 15 of 20: exactly floor((n - 1) f) + 1 of them, starting with the first.
    assert val_docs == [docs[0], docs[5], docs[10], docs[15]]
    train, val = tokens(tmp_path / "out" / "train.bin"), tokens(tmp_path / "out" / "val.bin")
    assert decode(train) == EOT_TOKEN.join(train_docs)
    assert decode(val) == EOT_TOKEN.join(val_docs)
    # 50256 only at boundaries: the literal "<|endoftext|>" inside a JSON story stayed text.
    assert (train == EOT_ID).sum() == len(train_docs) - 1 and (val == EOT_ID).sum() == len(val_docs) - 1
    expected = []
    for i, d in enumerate(train_docs):
        expected += ([EOT_ID] if i else []) + encode(d, allow_eot=False)
    np.testing.assert_array_equal(train, expected)

    on_disk = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert on_disk == meta
    assert meta["tokenizer"] == "gpt2" and meta["eot_id"] == EOT_ID and meta["dtype"] == "uint16"
    assert meta["train"] == {"file": "train.bin", "tokens": len(train), "documents": len(train_docs)}
    assert meta["val"] == {"file": "val.bin", "tokens": len(val), "documents": len(val_docs)}
    assert meta["val_fraction"] == 0.2
    assert [(s["path"], s["format"], s["documents"]) for s in meta["sources"]] == [
        (str(sources[0]), "eot", 3), (str(sources[1]), "json", 2), (str(sources[2]), "jsonl", 15)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["meta.json", "train.bin", "val.bin"]


def test_parallel_workers_write_identical_files(tmp_path, sources, monkeypatch):
    monkeypatch.setattr(prep, "CHUNK_DOCUMENTS", 4)  # several chunks in flight over 2 processes
    prep.prepare(sources, tmp_path / "one", val_fraction=0.1, workers=1, progress=False)
    prep.prepare(sources, tmp_path / "two", val_fraction=0.1, workers=2, progress=False)
    for name in ("train.bin", "val.bin"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_folder_source_and_separate_val_files(tmp_path, sources):
    val_file = tmp_path / "valid.txt"
    val_file.write_text("Val story one.\n\nVal story two.\n")
    meta = prep.prepare([tmp_path / "src"], tmp_path / "out", val_sources=[val_file], workers=1, progress=False)
    # A folder is read in sorted name order: data00.json, more.jsonl, stories.txt.
    assert decode(tokens(tmp_path / "out" / "train.bin")) == EOT_TOKEN.join(JSON_DOCS + JSONL_DOCS + EOT_DOCS)
    assert decode(tokens(tmp_path / "out" / "val.bin")) == "Val story one." + EOT_TOKEN + "Val story two."
    assert meta["val_fraction"] is None and meta["sources"][-1]["split"] == "val"


def test_prepare_embedded_round_trip(tmp_path):
    meta = prep.prepare_embedded(tmp_path, n_stories=60, seed=5, val_fraction=0.05, workers=1, progress=False)
    train_docs, val_docs = split_documents(list(stories.generate_stories(5, 60)), 0.05)
    assert decode(tokens(tmp_path / "train.bin")) == EOT_TOKEN.join(train_docs)
    assert decode(tokens(tmp_path / "val.bin")) == EOT_TOKEN.join(val_docs)
    assert (meta["train"]["documents"], meta["val"]["documents"]) == (57, 3)
    assert meta["sources"] == [{"embedded": "xtts_jax.text.stories", "seed": 5, "n_stories": 60,
                                "split": "train+val", "documents": 60}]


def test_errors_keep_previous_output(tmp_path, sources):
    out = tmp_path / "out"
    prep.prepare(sources, out, val_fraction=0.1, workers=1, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken\n')
    with pytest.raises(UserError, match="line 2 of .*bad.jsonl is not valid JSON"):
        prep.prepare(sources + [bad], out, workers=1, progress=False)
    with pytest.raises(UserError, match="missing.txt does not exist"):
        prep.prepare([tmp_path / "missing.txt"], out, workers=1, progress=False)
    one = tmp_path / "one.txt"
    one.write_text("Only one story.")
    with pytest.raises(UserError, match="no training documents"):
        prep.prepare([one], out, val_fraction=0.5, workers=1, progress=False)
    with pytest.raises(UserError, match="val_fraction 1.5"):
        prep.prepare(sources, out, val_fraction=1.5, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_cli(tmp_path, sources, capsys):
    with pytest.raises(SystemExit) as exit:
        prep.main([str(p) for p in sources] + ["--out", str(tmp_path / "cli"), "--workers", "1"])
    assert exit.value.code == 0 and "train" in capsys.readouterr().out
    assert (tmp_path / "cli" / "train.bin").stat().st_size > 0
    with pytest.raises(SystemExit) as exit:
        prep.main([str(tmp_path / "nope.txt"), "--out", str(tmp_path / "x")])
    assert exit.value.code == 2 and "nope.txt does not exist" in capsys.readouterr().err
