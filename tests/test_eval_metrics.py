"""Evaluation metrics: text normalisation, error rates, the recogniser's and embedder's contracts."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xtts_jax.errors import UserError
from xtts_jax.eval.text_norm import normalize_text

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("written, spoken", [
    ("  One day, a GIRL named Zoe -- smiled!  ", "one day a girl named zoe smiled"),
    ("Tom's red ball.", "tom's red ball"),
    ("well-known", "well known"),
    # Whisper writes digits where the reference spells them out
    ("Please call me back at 9 tomorrow morning.", "please call me back at nine tomorrow morning"),
    ("Please call me back at nine tomorrow morning.", "please call me back at nine tomorrow morning"),
    ("The train leaves at 6:30.", "the train leaves at six thirty"),
    ("at 10:05 a.m.", "at ten oh five am"),
    ("at 9:00", "at nine"),
    ("at nine o'clock", "at nine"),
    ("She paid $40 online.", "she paid forty dollars online"),
    ("It cost $3.50.", "it cost three dollars fifty cents"),
    ("Save 15% today & tomorrow", "save fifteen percent today and tomorrow"),
    ("7,412 people came", "seven thousand four hundred twelve people came"),
    ("my 3rd try", "my third try"),
    ("In 1999 it was 3.5 degrees.", "in nineteen ninety nine it was three point five degrees"),
    ("Mr. Brown and Dr. Lee", "mister brown and doctor lee"),
    ("Okay, that\u2019s fine", "ok that's fine"),
    ("", ""),
])
def test_normalize_text(written, spoken):
    assert normalize_text(written) == spoken


def test_error_rates_count_edits_over_reference_words_and_characters():
    from xtts_jax.eval.asr import error_rates

    # one substitution (cat->hat) and one deletion (sat) over 4 + 2 reference words = 2 / 6
    r = error_rates(["The cat sat down.", "Hello there!"], ["the hat down", "hello there"])
    assert r["wer"] == pytest.approx(2 / 6)
    # characters: "the cat sat down" -> "the hat down" is 1 substitution + 4 deletions ("sat ")
    assert r["cer"] == pytest.approx(5 / (len("the cat sat down") + len("hello there")))
    assert error_rates(["Call at 9."], ["call at nine"]) == {"wer": 0.0, "cer": 0.0}
    assert error_rates(["yes"], ["yes yes yes"])["wer"] == pytest.approx(2.0)  # insertions count
    with pytest.raises(UserError, match="as many"):
        error_rates(["a b"], [])
    with pytest.raises(UserError, match="empty"):
        error_rates(["?!"], ["x"])


def test_whisper_transcribes_nothing_from_silence_and_refuses_bad_waves():
    from xtts_jax.eval.asr import Whisper

    asr = Whisper()
    assert asr(np.zeros(0, np.float32), 22050) == ""
    with pytest.raises(UserError, match="finite mono"):
        asr(np.full(1000, np.nan, np.float32), 16000)
    with pytest.raises(UserError, match="finite mono"):
        asr(np.zeros((2, 1000), np.float32), 16000)


def test_speaker_embedding_is_unit_norm_and_none_for_silence():
    from xtts_jax.eval.speaker import SpeakerEmbedder

    emb = SpeakerEmbedder()
    t = np.arange(22050 * 2) / 22050
    voiced = (0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    e = emb(voiced, 22050)
    assert e.shape == (256,) and abs(np.linalg.norm(e) - 1) < 1e-4
    assert emb(np.zeros(22050, np.float32), 22050) is None
    assert emb(voiced[:1000], 22050) is None


def test_missing_eval_extra_is_one_line(tmp_path):
    # a stand-in faster_whisper that fails to import, first on the path
    (tmp_path / "faster_whisper.py").write_text("raise ImportError('no faster_whisper here')\n")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    proc = subprocess.run([sys.executable, str(ROOT / "tools/evaluate_tts.py"), "--manifest", str(manifest)],
                          capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and 'pip install -e ".[eval]"' in proc.stderr
