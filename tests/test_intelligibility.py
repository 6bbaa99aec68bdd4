"""The offline intelligibility metric: text normalisation, corpus WER, the recogniser's contract."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xtts_jax.errors import UserError
from xtts_jax.eval.intelligibility import Recognizer, normalize_text, word_error_rate

ROOT = Path(__file__).resolve().parents[1]


def test_normalize_text():
    assert normalize_text("  One day, a GIRL named Zoe -- smiled!  ") == "one day a girl named zoe smiled"
    assert normalize_text("Tom's red ball.") == "tom's red ball"
    assert normalize_text("well-known") == "well known"


def test_word_error_rate_counts_edits_over_reference_words():
    # one substitution (cat->hat) and one deletion (sat) over 4 + 2 reference words = 2 / 6
    refs = ["The cat sat down.", "Hello there!"]
    hyps = ["the hat down", "hello there"]
    assert word_error_rate(refs, hyps) == pytest.approx(2 / 6)
    assert word_error_rate(refs, refs) == 0.0
    # an insertion counts too, so WER can pass 1
    assert word_error_rate(["yes"], ["yes yes yes"]) == pytest.approx(2.0)
    with pytest.raises(UserError, match="as many"):
        word_error_rate(refs, hyps[:1])
    with pytest.raises(UserError, match="empty"):
        word_error_rate(["..."], ["x"])


def babble(seed: int, sr: int = 22050, seconds: float = 2.0) -> np.ndarray:
    """A voiced, syllable-rate modulated harmonic signal: enough like speech that the recogniser
    emits words, and different words for different seeds."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    phase = 2 * np.pi * np.cumsum(120 + 40 * np.sin(2 * np.pi * 0.7 * t)) / sr
    x = sum(rng.uniform(0.2, 1) / k * np.sin(k * phase) for k in range(1, 25))
    envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6))) ** 2
    return (0.3 * x * envelope / np.abs(x).max()).astype(np.float32)


def test_recognizer_resamples_forgets_and_refuses_bad_waves():
    pytest.importorskip("pocketsphinx")
    import librosa

    asr = Recognizer()
    wave = babble(0)
    heard = asr(wave, 22050)
    assert isinstance(heard, str) and heard.split()  # it does emit words for this signal
    assert heard == asr(librosa.resample(wave, orig_sr=22050, target_sr=16000), 16000)
    # what was heard before does not change the transcript (one shared decoder fails this)
    asr(3 * babble(5), 22050)
    asr((0.05 * np.random.default_rng(1).standard_normal(32000)).astype(np.float32), 16000)
    assert asr(wave, 22050) == heard
    with pytest.raises(UserError, match="finite mono"):
        asr(np.full(1600, np.nan, np.float32), 16000)
    with pytest.raises(UserError, match="finite mono"):
        asr(np.zeros((2, 1600), np.float32), 16000)


def test_eval_tool_bad_input_is_one_line_exit_2(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "tools/eval_intelligibility.py"), *a],  # noqa: E731
                                    capture_output=True, text=True, cwd=tmp_path)
    r = run("--manifest", str(tmp_path / "nope.jsonl"), "--dvae", "x")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
    (tmp_path / "m.jsonl").write_text("")
    r = run("--manifest", str(tmp_path / "m.jsonl"), "--dvae", str(tmp_path / "missing.safetensors"))
    assert r.returncode == 2 and "DVAE weights" in r.stderr and "Traceback" not in r.stderr
