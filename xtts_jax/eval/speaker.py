"""Speaker similarity: cosine between speaker-verification embeddings, offline.

The embedder is Resemblyzer's GE2E d-vector model (Wan et al. 2018; 256-d, unit norm), whose
weights ship inside its PyPI wheel. It is an independent judge: none of our models was trained
with it. It needs PyTorch, so it is part of the ``eval`` extra, never of synthesis or training.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from xtts_jax.audio.io import resample
from xtts_jax.errors import UserError
from xtts_jax.eval.asr import EVAL_EXTRA

EMBED_SAMPLE_RATE = 16000
MIN_SECONDS = 0.3  # less speech than this after Resemblyzer trims silence gives no embedding


@functools.cache
def _encoder():
    try:
        with warnings.catch_warnings():  # webrtcvad imports pkg_resources, which warns
            warnings.simplefilter("ignore")
            from resemblyzer import VoiceEncoder, preprocess_wav
    except ImportError:
        raise UserError(EVAL_EXTRA) from None
    return VoiceEncoder("cpu", verbose=False), preprocess_wav


class SpeakerEmbedder:
    """``SpeakerEmbedder()(wave, sample_rate) -> (256,) unit vector``, or None for near-silence."""

    name = "resemblyzer 0.1.4 (GE2E d-vector, 256-d)"

    def __init__(self):
        self.encoder, self.preprocess = _encoder()

    def __call__(self, wave: np.ndarray, sample_rate: int) -> np.ndarray | None:
        wave = resample(np.asarray(wave, np.float32), sample_rate, EMBED_SAMPLE_RATE)
        if wave.size < MIN_SECONDS * EMBED_SAMPLE_RATE or not np.any(wave):
            return None
        wave = self.preprocess(wave, EMBED_SAMPLE_RATE)  # volume normalised, long silences cut
        if wave.size < MIN_SECONDS * EMBED_SAMPLE_RATE:
            return None
        return np.asarray(self.encoder.embed_utterance(wave), np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
