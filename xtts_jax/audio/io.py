"""Reading and writing audio: soundfile for wav/flac/ogg, librosa for resampling.

Everything downstream (mel, DVAE, datasets) sees float32 mono at one sample rate, 22,050 Hz as
XTTS-v2. Loaders are a boundary: a file that cannot be used raises :class:`UserError` with one
sentence naming it, so a dataset pass can skip and count it and a CLI can print it.
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from xtts_jax.errors import UserError

SAMPLE_RATE = 22050


def audio_info(path: str | Path) -> tuple[int, int, float]:
    """``(sample_rate, channels, seconds)`` from the file header, without decoding the samples."""
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError/TypeError variously
        raise UserError(f"cannot read audio file {path}: {_short(e)}") from None
    return info.samplerate, info.channels, info.frames / max(info.samplerate, 1)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode ``path`` to float32 mono ``[samples]`` at ``sample_rate``.

    Channels are averaged (as torchaudio-based XTTS-v2 loaders do); other rates are resampled
    with librosa's default (soxr high quality).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file {path} does not exist.")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise UserError(f"cannot read audio file {path}: {_short(e)}") from None
    if data.shape[0] == 0:
        raise UserError(f"audio file {path} holds no samples.")
    wave = data.mean(axis=1)
    if not np.all(np.isfinite(wave)):
        raise UserError(f"audio file {path} holds NaN or infinite samples.")
    return resample(wave, sr, sample_rate)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float audio ``[samples]``; a no-op when the rates agree."""
    wave = np.asarray(wave, np.float32)
    if orig_sr == target_sr:
        return wave
    return librosa.resample(wave, orig_sr=orig_sr, target_sr=target_sr).astype(np.float32)


PEAK = 0.99  # the highest sample magnitude synthesis hands out: below full scale, never clipped


def limit_peak(wave: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """``wave`` scaled down as a whole when its largest magnitude exceeds ``peak``, else unchanged:
    the waveform keeps its shape (only its level changes), so nothing is clipped on writing."""
    wave = np.asarray(wave, np.float32)
    top = float(np.abs(wave).max()) if wave.size else 0.0
    return wave * np.float32(peak / top) if top > peak else wave


def save_audio(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write float mono ``[samples]`` to ``path``; the format follows the suffix (.wav is 16-bit PCM).

    Samples are clipped to [-1, 1] so a loud reconstruction does not wrap around.
    """
    path = Path(path)
    wave = np.asarray(wave, np.float32)
    if wave.ndim != 1:
        raise UserError(f"save_audio expects mono [samples], got shape {wave.shape}.")
    suffix = path.suffix.lower()
    subtype = {".wav": "PCM_16", ".flac": "PCM_16", ".ogg": "VORBIS"}.get(suffix)
    if subtype is None:
        raise UserError(f"cannot write audio as {path.name}: use a .wav, .flac or .ogg name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wave, -1.0, 1.0), sample_rate, subtype=subtype)
    return path


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
