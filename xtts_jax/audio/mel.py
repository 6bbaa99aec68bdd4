"""Log-mel spectrograms as XTTS-v2 computes them, in numpy (librosa) and in JAX, and back to audio.

XTTS-v2 (and Tortoise before it) feeds its DVAE a torchaudio ``MelSpectrogram`` with n_fft 1024,
hop 256, win 1024, 80 mels from 0 to 8 kHz at 22,050 Hz, power 2, slaney area normalisation,
centred frames with reflect padding, then ``log(clamp(x, 1e-5))`` and an optional per-channel
normalisation by statistics stored with the model. Here librosa is the reference; the JAX version
(for features computed on device, inside a jitted step) matches it within 1e-4.

One hop of 256 samples is one mel frame; the DVAE downsamples 4x, so one audio token covers
1,024 samples (21.5 tokens per second at 22,050 Hz).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterable

import jax.numpy as jnp
import librosa
import numpy as np
import scipy.fft
import scipy.sparse
from jaxtyping import Array, Float

from xtts_jax.errors import UserError

LOG_CLAMP = 1e-5  # as XTTS-v2 / Tortoise: log(clamp(mel, min=1e-5)), floor at about -11.51


@dataclasses.dataclass(frozen=True)
class MelConfig:
    """Mel settings; names follow librosa. Defaults are XTTS-v2's DVAE features.

    ``htk``: XTTS-v2's torchaudio transform leaves torchaudio's default HTK mel scale on while
    asking for slaney area normalisation; we default to the slaney scale (librosa's default)
    and keep ``htk=True`` available to reproduce the XTTS-v2 filter bank exactly.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    htk: bool = False
    norm: str | None = "slaney"

    def __post_init__(self):
        if self.win_length > self.n_fft:
            raise UserError(f"win_length {self.win_length} must not exceed n_fft {self.n_fft}.")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise UserError(
                f"mel band {self.fmin}-{self.fmax} Hz must lie within 0-{self.sample_rate / 2} Hz."
            )

    def n_frames(self, n_samples: int) -> int:
        """Frames of a centred STFT over ``n_samples`` samples."""
        return 1 + n_samples // self.hop_length


@dataclasses.dataclass(frozen=True)
class MelStats:
    """Per-channel statistics of log-mel over a dataset; the model stores them with its config.

    Normalised mel is ``(log_mel - mean) / std``. XTTS-v2's ``mel_norms`` (a per-channel divisor)
    is the special case ``mean = 0, std = mel_norms``.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "MelStats":
        return cls(tuple(float(x) for x in d["mean"]), tuple(float(x) for x in d["std"]))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.mean, np.float32)[:, None], np.asarray(self.std, np.float32)[:, None]


def compute_mel_stats(mels: Iterable[np.ndarray], min_std: float = 1e-3) -> MelStats:
    """Mean and std per mel channel over all frames of ``mels`` (each ``[n_mels, frames]``).

    Accumulates sums in float64, so a whole corpus streams through without being held in memory.
    """
    count, total, total_sq = 0, None, None
    for m in mels:
        m = np.asarray(m, np.float64)
        if total is None:
            total, total_sq = np.zeros(m.shape[0]), np.zeros(m.shape[0])
        total += m.sum(axis=1)
        total_sq += (m * m).sum(axis=1)
        count += m.shape[1]
    if not count:
        raise UserError("cannot compute mel statistics over zero frames.")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return MelStats(tuple(mean.tolist()), tuple(np.maximum(std, min_std).tolist()))


@functools.lru_cache(maxsize=16)
def mel_basis(cfg: MelConfig) -> np.ndarray:
    """Mel filter bank ``[n_mels, n_fft // 2 + 1]`` (librosa's), cached per config."""
    basis = librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
        htk=cfg.htk, norm=cfg.norm,
    ).astype(np.float32)
    basis.setflags(write=False)
    return basis


def log_mel(wave: np.ndarray, cfg: MelConfig = MelConfig(), stats: MelStats | None = None) -> np.ndarray:
    """Log-mel of a mono waveform ``[samples]`` -> ``[n_mels, frames]`` float32 (librosa)."""
    wave = np.asarray(wave, np.float32)
    if wave.ndim != 1:
        raise UserError(f"log_mel expects a mono waveform [samples], got shape {wave.shape}.")
    # reflect padding as torchaudio (XTTS-v2); librosa's own default is zero padding
    power = np.abs(
        librosa.stft(wave, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                     window="hann", center=True, pad_mode="reflect")
    ) ** 2
    mel = np.log(np.maximum(mel_basis(cfg) @ power, LOG_CLAMP)).astype(np.float32)
    if stats is not None:
        mean, std = stats.arrays()
        mel = (mel - mean) / std
    return mel


@functools.lru_cache(maxsize=16)
def _window(cfg: MelConfig) -> np.ndarray:
    # periodic Hann of win_length, zero-padded to n_fft and centred, as librosa.stft does
    win = librosa.filters.get_window("hann", cfg.win_length, fftbins=True)
    return librosa.util.pad_center(win, size=cfg.n_fft).astype(np.float32)


def log_mel_jax(
    wave: Float[Array, " samples"], cfg: MelConfig = MelConfig(), stats: MelStats | None = None
) -> Float[Array, "n_mels frames"]:
    """Log-mel in JAX, equal to :func:`log_mel` within 1e-4. One unbatched waveform; vmap for a batch.

    Jit-friendly: the sample count is static, the window and filter bank are constants.
    """
    pad = cfg.n_fft // 2
    x = jnp.pad(wave.astype(jnp.float32), (pad, pad), mode="reflect")
    n_frames = cfg.n_frames(wave.shape[0])
    idx = np.arange(n_frames)[:, None] * cfg.hop_length + np.arange(cfg.n_fft)[None, :]
    frames = x[idx] * _window(cfg)  # [frames, n_fft]
    spec = jnp.fft.rfft(frames, axis=-1)
    power = spec.real**2 + spec.imag**2  # [frames, n_fft // 2 + 1]
    mel = jnp.log(jnp.maximum(jnp.asarray(mel_basis(cfg)) @ power.T, LOG_CLAMP))
    if stats is not None:
        mean, std = stats.arrays()
        mel = (mel - mean) / std
    return mel


@functools.lru_cache(maxsize=16)
def _mel_inverse(cfg: MelConfig) -> tuple[np.ndarray, np.ndarray, scipy.sparse.csr_array, scipy.sparse.csr_array]:
    """What :func:`mel_to_magnitude` needs, cached per config: the bins some filter covers (the
    rest stay at the floor), the pseudo-inverse of the filter bank on them, and the bank and its
    transpose as sparse matrices (each bin lies under at most two filters, so a sparse product is
    ~50x less work than a dense one, and never waits for BLAS threads on a busy CPU)."""
    basis = mel_basis(cfg)
    bins = np.flatnonzero(basis.any(axis=0))
    covered = basis[:, bins]
    inverse = np.linalg.pinv(covered.astype(np.float64)).astype(np.float32)
    return bins, inverse, scipy.sparse.csr_array(covered), scipy.sparse.csr_array(covered.T)


def mel_to_magnitude(power_mel: np.ndarray, cfg: MelConfig = MelConfig(), refine_steps: int = 100) -> np.ndarray:
    """Linear magnitude ``[n_fft // 2 + 1, frames]`` from a power mel ``[n_mels, frames]``.

    The non-negative power spectrum whose mel is ``power_mel``: the filter bank's pseudo-inverse
    clamped at ``LOG_CLAMP ** 2``, then ``refine_steps`` multiplicative updates for non-negative
    least squares (Lee and Seung 2001), all frames at once as two sparse products per step.
    librosa's ``mel_to_stft`` solves the same problem with L-BFGS-B, which took 6 s per minute of
    audio on our CPU and minutes on long texts; Griffin-Lim from this magnitude is as close or
    closer to the true one (spectral convergence in ``tests/test_audio_io_mel.py``, figures from
    ``bench/bench_render.py`` in the README). Fewer steps leave a tone's energy spread over
    neighbouring bins (at 50 its recovered pitch moved with the seed by up to 6 Hz).
    """
    bins, inverse, basis, basis_t = _mel_inverse(cfg)
    power_mel = np.asarray(power_mel, np.float32)
    power = np.maximum(inverse @ power_mel, LOG_CLAMP**2)
    target = basis_t @ power_mel
    for _ in range(refine_steps):  # each step lowers |basis @ power - power_mel|^2 and keeps power >= 0
        power *= target / np.maximum(basis_t @ (basis @ power), 1e-30)
    full = np.full((cfg.n_fft // 2 + 1, power_mel.shape[1]), LOG_CLAMP**2, np.float32)
    full[bins] = np.maximum(power, LOG_CLAMP**2)
    return np.sqrt(full)


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Sum of ``frames`` ``[n, n_fft]``, frame i starting at sample ``i * hop``: ``(n - 1) * hop + n_fft``
    samples (rounded up to whole hops), as ``ceil(n_fft / hop)`` shifted whole-array additions."""
    n_frames, n_fft = frames.shape
    shifts = -(-n_fft // hop)
    x = np.pad(frames, ((0, 0), (0, shifts * hop - n_fft))).reshape(n_frames, shifts, hop)
    out = np.zeros((n_frames + shifts - 1) * hop, np.float32)
    for j in range(shifts):
        out[j * hop: (j + n_frames) * hop] += x[:, j].reshape(-1)
    return out


def _istft(spec: np.ndarray, window: np.ndarray, hop: int, length: int, inverse_norm: np.ndarray) -> np.ndarray:
    """Waveform ``[length]`` of a centred STFT ``spec`` ``[frames, bins]`` (librosa's ``istft``), with
    ``inverse_norm`` from :func:`_inverse_window_norm`."""
    frames = scipy.fft.irfft(spec, n=len(window), axis=-1)
    frames *= window
    wave = _overlap_add(frames, hop)[len(window) // 2: len(window) // 2 + length]
    return np.pad(wave, (0, length - len(wave))) * inverse_norm


def _inverse_window_norm(window: np.ndarray, hop: int, n_frames: int, length: int) -> np.ndarray:
    """``[length]``: 1 / the summed square of the windows over each sample of a centred signal
    (1 where they vanish), as librosa's ``istft`` divides by."""
    n_fft = len(window)
    norm = _overlap_add(np.broadcast_to(window**2, (n_frames, n_fft)), hop)[n_fft // 2: n_fft // 2 + length]
    inverse = np.where(norm > 1e-8, 1.0 / np.maximum(norm, 1e-8), 1.0)
    return np.pad(inverse, (0, length - len(inverse)), constant_values=1.0).astype(np.float32)


def _stft(wave: np.ndarray, window: np.ndarray, hop: int, n_frames: int) -> np.ndarray:
    """Centred, reflect-padded STFT ``[n_frames, bins]`` (as :func:`log_mel` and librosa's ``stft``)."""
    n_fft = len(window)
    padded = np.pad(wave, n_fft // 2, mode="reflect") if len(wave) > 1 else np.zeros(len(wave) + n_fft, np.float32)
    padded = np.pad(padded, (0, max(0, (n_frames - 1) * hop + n_fft - len(padded))))
    return scipy.fft.rfft(np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames] * window, axis=-1)


def griffin_lim_magnitude(
    magnitude: np.ndarray, cfg: MelConfig = MelConfig(), n_iter: int = 32, length: int | None = None,
    seed: int | None = 0, momentum: float = 0.99,
) -> np.ndarray:
    """Waveform ``[length]`` float32 whose STFT magnitude approaches ``magnitude`` ``[n_fft // 2 + 1, frames]``.

    Fast Griffin-Lim (Perraudin, Balazs and Sondergaard 2013: the phase estimate extrapolated
    with ``momentum``, as librosa's ``griffinlim``) on whole arrays in float32: every iteration is
    one FFT over all frames each way and an overlap-add of ``ceil(n_fft / hop)`` shifted copies.
    ``length`` defaults to ``hop * (frames - 1)`` (librosa's). The initial phase is drawn with
    ``seed`` (None: unseeded), so the same magnitude gives the same audio.
    """
    mag = np.ascontiguousarray(np.asarray(magnitude, np.float32).T)  # [frames, bins]: one FFT per row
    n_frames, hop = mag.shape[0], cfg.hop_length
    length = hop * (n_frames - 1) if length is None else length
    window = _window(cfg)
    inverse_norm = _inverse_window_norm(window, hop, n_frames, length)
    phase = np.exp(2j * np.pi * np.random.default_rng(seed).random(mag.shape, np.float32)).astype(np.complex64)
    spec = mag * phase
    rebuilt = np.zeros_like(spec)
    for _ in range(n_iter):
        previous = rebuilt
        rebuilt = _stft(_istft(spec, window, hop, length, inverse_norm), window, hop, n_frames)
        previous *= -momentum / (1 + momentum)  # the new estimate extrapolated away from the last one
        previous += rebuilt
        spec = previous * (mag / (np.abs(previous) + 1e-16))
    return _istft(spec, window, hop, length, inverse_norm)


def griffin_lim(
    log_mel_spec: np.ndarray, cfg: MelConfig = MelConfig(), n_iter: int = 32,
    stats: MelStats | None = None, length: int | None = None, seed: int | None = 0,
) -> np.ndarray:
    """Waveform ``[samples]`` float32 from a log-mel ``[n_mels, frames]`` with Griffin-Lim.

    The vocoder-free way to hear any mel, original or DVAE-reconstructed: the mel is undone with
    a non-negative least-squares fit of the filter bank (:func:`mel_to_magnitude`), then phase is estimated
    iteratively (:func:`griffin_lim_magnitude`) from an initial phase drawn with ``seed`` (None:
    unseeded), so the same mel gives the same audio.
    """
    m = np.asarray(log_mel_spec, np.float32)
    if m.ndim != 2 or m.shape[0] != cfg.n_mels:
        raise UserError(f"griffin_lim expects a log-mel of shape [{cfg.n_mels}, frames], got {m.shape}.")
    if stats is not None:
        mean, std = stats.arrays()
        m = m * std + mean
    if length is not None:  # exactly the frames a centred STFT of `length` has
        want = cfg.n_frames(length)
        m = np.pad(m[:, :want], ((0, 0), (0, max(want - m.shape[1], 0))), constant_values=np.log(LOG_CLAMP))
    return griffin_lim_magnitude(mel_to_magnitude(np.exp(m), cfg), cfg, n_iter, length, seed)
