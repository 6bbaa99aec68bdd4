"""Corpus readers (TinyStories .txt with <|endoftext|>, JSON shards, JSONL, blank-line text) and the
embedded story generator."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xtts_jax.errors import UserError
from xtts_jax.text import corpus, stories

SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinystories_valid_sample.txt"


def read(path, format="auto"):
    return list(corpus.read_documents(path, format))


def test_eot_text_as_tinystories_ships_it(tmp_path):
    path = tmp_path / "TinyStories-valid.txt"
    # As TinyStoriesV2: the marker on its own line, paragraphs inside a story kept, stray blank lines around.
    path.write_text("One day, Tom ran.\n\nHe was happy.\n<|endoftext|>\n\nLily had a cat.\n<|endoftext|>\n"
                    "A marker inline<|endoftext|>splits too.\n<|endoftext|>\n")
    assert corpus.detect_format(path) == "eot"
    assert read(path) == ["One day, Tom ran.\n\nHe was happy.", "Lily had a cat.", "A marker inline", "splits too."]


def test_json_shard_takes_the_story_field(tmp_path):
    path = tmp_path / "data00.json"
    records = [{"story": "Once upon a time.\nThe end.", "instruction": {"words": ["cat"]}, "summary": "x"},
               {"story": "  Ben smiled.  ", "source": "GPT-4"}, {"story": "   "}]
    path.write_text(json.dumps(records))
    assert corpus.detect_format(path) == "json"
    assert read(path) == ["Once upon a time.\nThe end.", "Ben smiled."]


def test_jsonl_with_blank_lines_and_json_named_jsonl(tmp_path):
    lines = [json.dumps({"text": "first doc\nwith two lines"}), "", json.dumps({"text": "second é doc"}), "  "]
    for name in ("docs.jsonl", "docs.json"):  # a .json file of one object per line is read as JSONL
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        assert corpus.detect_format(path) == "jsonl"
        assert read(path) == ["first doc\nwith two lines", "second é doc"]


def test_plain_text_splits_at_blank_lines(tmp_path):
    path = tmp_path / "sample.txt"
    path.write_text("\n\nFirst story line one.\nLine two.\n\n   \n\t\nSecond story.\n\n\n\nThird story.")
    assert corpus.detect_format(path) == "text"
    assert read(path) == ["First story line one.\nLine two.", "Second story.", "Third story."]


def test_format_override(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("one\n\ntwo\n<|endoftext|>\nthree\n")
    assert read(path) == ["one\n\ntwo", "three"]
    assert read(path, "text") == ["one", "two\n<|endoftext|>\nthree"]
    with pytest.raises(UserError, match="format 'csv'"):
        corpus.read_documents(path, "csv")


def test_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="missing.txt does not exist"):
        corpus.read_documents(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UserError, match="empty.txt is empty"):
        corpus.read_documents(empty)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n\n")
    with pytest.raises(UserError, match="blank.txt holds no documents"):
        read(blank)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"story": "ok"},')
    with pytest.raises(UserError, match="bad.json is not valid JSON"):
        read(bad)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"text": "ok"}\n{"title": "no text"}\n')
    with pytest.raises(UserError, match="line 2 of .*wrong.jsonl"):
        read(wrong)
    with pytest.raises(UserError, match="expected a list"):
        (tmp_path / "obj.json").write_text('{"story": "x"}')
        read(tmp_path / "obj.json", "json")


def test_expand_sources_folders_sorted(tmp_path):
    for name in ("data01.json", "data00.json", "notes.md"):
        (tmp_path / name).write_text("[]")
    assert [p.name for p in corpus.expand_sources(tmp_path)] == ["data00.json", "data01.json"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no corpus files"):
        corpus.expand_sources([tmp_path / "empty"])


@pytest.mark.skipif(not SHARED_SAMPLE.is_file(), reason="optional TinyStories sample in ../shared/data")
def test_real_tinystories_sample_reads_as_blank_line_text():
    docs = read(SHARED_SAMPLE)
    assert corpus.detect_format(SHARED_SAMPLE) == "text"
    assert len(docs) > 1000 and all(d == d.strip() and "\n\n" not in d for d in docs)
    assert sum(len(d) for d in docs) > 0.9 * SHARED_SAMPLE.stat().st_size - 2 * len(docs)


def test_stories_are_deterministic_and_prefix_stable():
    a = list(stories.generate_stories(seed=3, n_stories=50))
    assert a == list(stories.generate_stories(seed=3, n_stories=50))
    assert a[:20] == list(stories.generate_stories(seed=3, n_stories=20))
    b = list(stories.generate_stories(seed=4, n_stories=50))
    assert sum(x == y for x, y in zip(a, b)) <= 1
    assert len(set(a)) == 50


def test_stories_do_not_depend_on_the_hash_seed():
    code = "from xtts_jax.text.stories import story; print(repr(story(7, 11)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"}).stdout.strip()
    assert out == repr(stories.story(7, 11))


def test_stories_are_well_formed_and_a_few_megabytes():
    docs = list(stories.generate_stories())
    assert len(docs) == stories.DEFAULT_N_STORIES
    assert 2e6 < sum(map(len, docs)) < 8e6
    for doc in docs[:500]:
        paragraphs = doc.split("\n\n")
        assert len(paragraphs) == 3 and all(p.strip() == p and p for p in paragraphs)
        assert doc.isascii() and "{" not in doc and "  " not in doc
        assert doc[0].isupper() and doc.rstrip('"')[-1] in ".!?"
    # The vocabulary is small (that is the point) but not tiny.
    words = {w.strip('.,!?"\'').lower() for d in docs for w in d.split()}
    assert 300 < len(words) < 2000
