"""Manifest readers on tiny fake datasets (written here), and validation that skips broken files."""

import json
import logging

import numpy as np
import pytest
import soundfile as sf

from xtts_jax.audio.datasets import (
    Utterance, detect_kind, load_dataset, read_dataset, read_manifest, validate, write_manifest,
)
from xtts_jax.errors import UserError


def _wav(path, seconds=1.0, sr=22050, channels=1, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * sr)
    data = 0.1 * np.sin(np.arange(n) * 0.05)[:, None].repeat(channels, 1)
    sf.write(path, data, sr, format=fmt)
    return path


def test_ljspeech_reader_and_validation(tmp_path, caplog):
    root = tmp_path / "LJSpeech-1.1"
    _wav(root / "wavs" / "LJ001-0001.wav", 1.0)
    _wav(root / "wavs" / "LJ001-0002.wav", 0.2)  # too short
    _wav(root / "wavs" / "LJ001-0003.wav", 30.0, sr=8000)  # telephone rate
    (root / "wavs" / "LJ001-0004.wav").write_bytes(b"RIFF....garbage")  # unreadable
    _wav(root / "wavs" / "LJ001-0006.wav", 1.0)  # no text
    (root / "metadata.csv").write_text(
        'LJ001-0001|Printing, in 1 sense|Printing, in one "sense\n'
        "LJ001-0002|short|short\n"
        "LJ001-0003|low rate|low rate\n"
        "LJ001-0004|broken|broken\n"
        "LJ001-0005|points nowhere|points nowhere\n"
        "LJ001-0006| | \n"
        "just-one-column\n",
        encoding="utf-8",
    )
    assert detect_kind(root) == detect_kind(root / "metadata.csv") == "ljspeech"
    with caplog.at_level(logging.WARNING):
        kept, report = load_dataset(root)
    assert [u.audio_path.name for u in kept] == ["LJ001-0001.wav"]
    assert kept[0].text == 'Printing, in one "sense' and kept[0].speaker == "LJ"
    assert {k: report[k] for k in ("too_short", "low_sample_rate", "unreadable", "missing_file",
                                   "missing_text", "bad_row")} == dict.fromkeys(
        ("too_short", "low_sample_rate", "unreadable", "missing_file", "missing_text", "bad_row"), 1)
    assert report["kept"] == 1 and report["skipped"] == 6 and report["total"] == 7
    assert report["kept_seconds"] == pytest.approx(1.0, abs=1e-3)
    assert "skipped 6 of 7" in caplog.text


def test_libritts_reader(tmp_path):
    root = tmp_path / "train-clean-100"
    for spk, chap, uid, text in [("19", "198", "19_198_000000_000000", "Hello there."),
                                  ("19", "198", "19_198_000001_000000", "General Kenobi."),
                                  ("103", "1240", "103_1240_000000_000001", "Another voice.")]:
        wav = _wav(root / spk / chap / f"{uid}.wav", 0.6, sr=24000)
        (wav.parent / f"{uid}.normalized.txt").write_text(text + "\n")
        (wav.parent / f"{uid}.original.txt").write_text("WRONG " + text)
    _wav(root / "103" / "1240" / "103_1240_000009_000000.wav", 0.6, sr=24000)  # no transcript
    assert detect_kind(root) == "libritts"
    utts = read_dataset(root)
    assert len(utts) == 4
    by_name = {u.audio_path.stem: u for u in utts}
    assert by_name["19_198_000001_000000"] == Utterance(
        root / "19" / "198" / "19_198_000001_000000.wav", "General Kenobi.", "19")
    assert by_name["103_1240_000000_000001"].speaker == "103"
    kept, report = validate(utts)
    assert len(kept) == 3 and report["missing_text"] == 1
    assert report["seconds_per_speaker"] == pytest.approx({"103": 0.6, "19": 1.2})


def test_vctk_reader_both_layouts(tmp_path):
    old = tmp_path / "VCTK-Corpus"
    (old / "txt" / "p225").mkdir(parents=True)
    (old / "txt" / "p225" / "p225_001.txt").write_text("Please call Stella.\n")
    (old / "txt" / "p225" / "p225_002.txt").write_text("Ask her to bring these things.\n")
    _wav(old / "wav48" / "p225" / "p225_001.wav", 1.0, sr=48000, channels=1)
    assert detect_kind(old) == "vctk"
    kept, report = load_dataset(old)
    assert [(u.speaker, u.text) for u in kept] == [("p225", "Please call Stella.")]
    assert report["missing_file"] == 1

    new = tmp_path / "VCTK-0.92"
    (new / "txt" / "p226").mkdir(parents=True)
    (new / "txt" / "p226" / "p226_003.txt").write_text("Six spoons of fresh snow peas.")
    _wav(new / "wav48_silence_trimmed" / "p226" / "p226_003_mic2.flac", 1.0, sr=48000, fmt="FLAC")
    _wav(new / "wav48_silence_trimmed" / "p226" / "p226_003_mic1.flac", 1.0, sr=48000, fmt="FLAC")
    utts = read_dataset(new)
    assert [u.audio_path.name for u in utts] == ["p226_003_mic1.flac"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_generic_manifest_round_trip_and_bad_rows(tmp_path, suffix):
    a = _wav(tmp_path / "audio" / "a.wav", 1.0)
    b = _wav(tmp_path / "audio" / "b.ogg", 1.0, fmt="OGG")
    quad = _wav(tmp_path / "audio" / "quad.wav", 1.0, channels=4)
    long = _wav(tmp_path / "audio" / "long.wav", 3.0, sr=16000)
    empty = tmp_path / "audio" / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 22050)
    utts = [Utterance(a, 'She said "hi", then left.', "alice"), Utterance(b, "Bob here.", "bob"),
            Utterance(quad, "Four channels.", "carol"), Utterance(long, "Long.", "dan"),
            Utterance(empty, "Nothing.", "erin")]
    path = write_manifest(utts, tmp_path / f"manifest{suffix}")
    if suffix == ".jsonl":
        assert json.loads(path.read_text().splitlines()[0])["audio_path"] == "audio/a.wav"
        with open(path, "a") as f:
            f.write("{not json\n" + json.dumps({"text": "no audio path"}) + "\n")
    back = read_manifest(path)
    assert back == utts
    kept, report = load_dataset(path, max_seconds=2.0)
    assert [u.speaker for u in kept] == ["alice", "bob"]
    assert (report["too_many_channels"], report["too_long"], report["empty"]) == (1, 1, 1)
    assert report["bad_row"] == (2 if suffix == ".jsonl" else 0)


def test_manifest_errors_are_one_sentence(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_dataset(tmp_path / "nope")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,words\nx.wav,hello\n")
    with pytest.raises(UserError, match="audio_path column"):
        read_manifest(bad)
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match="cannot tell which dataset"):
        read_dataset(tmp_path / "folder")
    with pytest.raises(UserError, match="unknown dataset kind"):
        read_dataset(bad, kind="timit")
