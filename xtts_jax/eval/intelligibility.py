"""Intelligibility: word error rate of an offline speech recogniser on synthesised audio.

No ear in the loop and no download: PocketSphinx (CMU's HMM recogniser; its PyPI wheel carries
the US-English acoustic model, language model and dictionary) transcribes, jiwer scores. The
absolute WER of such a small recogniser is high even on clean synthetic speech (about 0.2 on
flite's voices), so read a number beside the same recogniser's WER on the original recordings and
on their DVAE round trip: the ladder recording -> DVAE -> TTS says where intelligibility is lost.

Both packages are the ``eval`` extra (``pip install -e ".[eval]"``); nothing at run time needs them.
"""

from __future__ import annotations

import dataclasses
import re

import librosa
import numpy as np

from xtts_jax.errors import UserError

ASR_SAMPLE_RATE = 16000  # the rate of PocketSphinx's default acoustic model


def normalize_text(text: str) -> str:
    """Lower case, letters, digits and apostrophes; punctuation becomes a space."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split())


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (total edits / total reference words) after :func:`normalize_text`."""
    import jiwer

    if len(references) != len(hypotheses) or not references:
        raise UserError(f"need as many hypotheses as references (got {len(hypotheses)} and {len(references)}), at least one")
    refs = [normalize_text(r) for r in references]
    if not all(refs):
        raise UserError("a reference transcript is empty after normalisation")
    return float(jiwer.wer(refs, [normalize_text(h) for h in hypotheses]))


@dataclasses.dataclass
class Recognizer:
    """``Recognizer()(wave, sample_rate) -> text`` with PocketSphinx's bundled US-English model."""

    def __post_init__(self):
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise UserError('the speech recogniser needs pocketsphinx: pip install -e ".[eval]"') from None
        self._make = Decoder

    def __call__(self, wave: np.ndarray, sample_rate: int) -> str:
        wave = np.asarray(wave, np.float32)
        if wave.ndim != 1 or not np.all(np.isfinite(wave)):
            raise UserError(f"the recogniser takes a finite mono waveform, got shape {wave.shape}")
        if sample_rate != ASR_SAMPLE_RATE:
            wave = librosa.resample(wave, orig_sr=sample_rate, target_sr=ASR_SAMPLE_RATE)
        pcm = (np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)
        # A fresh decoder per utterance (~0.4 s to load): one decoder adapts its feature
        # normalisation to what it has heard, so a transcript would depend on the utterances
        # before it (measured: the same audio read differently after two others).
        d = self._make(samprate=ASR_SAMPLE_RATE, logfn="/dev/null")
        d.start_utt()
        d.process_raw(pcm.tobytes(), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return hyp.hypstr if hyp is not None else ""

    def wer(self, waves: list[np.ndarray], sample_rate: int, references: list[str]) -> tuple[float, list[str]]:
        """(corpus WER, the transcripts) of ``waves`` against ``references``."""
        hyps = [self(w, sample_rate) for w in waves]
        return word_error_rate(references, hyps), hyps
