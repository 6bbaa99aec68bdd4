"""XTTS-v2's speaker encoder: a 16 kHz waveform in, a 512-d unit-norm d-vector out, in Equinox.

coqui TTS's ``ResNetSpeakerEncoder`` (H/ASP, Heo et al. 2020, arXiv 2009.14153) as XTTS-v2's
``HifiDecoder`` builds it (64 mels, ``log_input``, torch front end, 512-d) and reads it
(``l2_norm=True``), for the HiFiGAN decoder's speaker conditioning.

* Front end: pre-emphasis ``x[t] - 0.97 x[t-1]`` (torch's reflect padding makes the first sample
  ``x[0] - 0.97 x[1]``); torchaudio's ``MelSpectrogram`` defaults at 16 kHz, n_fft 512, hop 160,
  a periodic Hamming window of 400 centred in the frame, centred frames with reflect padding,
  power 2, 64 HTK mels from 0 Hz to Nyquist, no norm; ``log(mel + 1e-6)``; ``InstanceNorm1d``.
* Trunk on the ``[1, mels, frames]`` image: 3x3 conv (bias) -> ReLU -> BatchNorm, then stages of
  squeeze-excitation basic blocks (layers [3, 4, 6, 3], channels [32, 64, 128, 256]); stages 2-4
  open with stride 2 on both axes and a 1x1 conv + BN shortcut. A block: conv -> ReLU -> BN ->
  conv -> BN -> SE gate (mean, Linear c -> c/8, ReLU, Linear, sigmoid) -> + shortcut -> ReLU.
  ReLU comes before BatchNorm, as in the reference.
* Pooling: the ``[256, mels/8, t]`` map read as ``[256 * mels/8, t]`` (channel major); weights =
  softmax over time of 1x1 Conv1d -> ReLU -> BatchNorm1d -> 1x1 Conv1d; the weighted mean and
  std (``sqrt(clamp(E[x^2] - mu^2, 1e-5))``), concatenated -> Linear -> divided by the L2 norm.

BatchNorm runs in inference mode on running statistics stored as arrays of the module (eps 1e-5
as torch). Attribute names follow the torch module; ``xtts_jax.convert.speaker_encoder`` renames
only the indices of coqui's ``nn.Sequential`` containers.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import librosa
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from xtts_jax.audio.io import resample
from xtts_jax.audio.mel import MelConfig, mel_basis
from xtts_jax.errors import UserError

BN_EPS = 1e-5  # torch's BatchNorm and InstanceNorm default
LOG_OFFSET = 1e-6  # as coqui's log_input: (x + 1e-6).log()
STD_CLAMP = 1e-5  # attentive statistics pooling: variance clamped before the sqrt


@dataclasses.dataclass(frozen=True)
class SpeakerEncoderConfig:
    """Hyper-parameters; defaults are XTTS-v2's (``HifiDecoder``'s speaker encoder and audio config)."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64  # coqui's input_dim
    preemphasis: float = 0.97
    layers: tuple[int, ...] = (3, 4, 6, 3)
    num_filters: tuple[int, ...] = (32, 64, 128, 256)
    se_reduction: int = 8
    attention_channels: int = 128
    proj_dim: int = 512

    def __post_init__(self):
        if len(self.layers) != 4 or len(self.num_filters) != 4:
            raise UserError(f"layers {self.layers} and num_filters {self.num_filters} must each have 4 stages.")
        if min(self.layers) < 1:
            raise UserError(f"every stage needs at least one block, got layers {self.layers}.")
        if self.n_mels % 8:
            raise UserError(f"n_mels {self.n_mels} must be a multiple of 8 (three stride-2 stages).")
        if min(self.num_filters) < self.se_reduction:
            raise UserError(f"num_filters {self.num_filters} must be at least se_reduction {self.se_reduction}.")
        if not 0 < self.win_length <= self.n_fft:
            raise UserError(f"win_length {self.win_length} must lie in 1..n_fft ({self.n_fft}).")

    @property
    def pooled_channels(self) -> int:  # last stage's filters times mels / 8
        return self.num_filters[-1] * (self.n_mels // 8)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SpeakerEncoderConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UserError(f"unknown speaker encoder config keys {sorted(unknown)}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@functools.lru_cache(maxsize=8)
def mel_filter_bank(cfg: SpeakerEncoderConfig) -> np.ndarray:
    """``[n_mels, n_fft // 2 + 1]``: torchaudio's default filter bank (HTK scale, no norm, 0 Hz to Nyquist)."""
    return mel_basis(MelConfig(sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                               win_length=cfg.win_length, n_mels=cfg.n_mels, fmin=0.0,
                               fmax=cfg.sample_rate / 2, htk=True, norm=None))


@functools.lru_cache(maxsize=8)
def hamming_window(cfg: SpeakerEncoderConfig) -> np.ndarray:
    """``[win_length]``: ``torch.hamming_window(win_length)`` (periodic, 0.54 - 0.46 cos)."""
    window = librosa.filters.get_window("hamming", cfg.win_length, fftbins=True).astype(np.float32)
    window.setflags(write=False)
    return window


def log_mel_spectrogram(wave: Float[Array, " samples"],
                        cfg: SpeakerEncoderConfig) -> Float[Array, "n_mels frames"]:
    """Pre-emphasis, torchaudio's mel spectrogram, ``log(mel + 1e-6)``: ``1 + samples // hop`` frames.
    Needs more than ``n_fft // 2`` samples (the reflect padding of centred frames)."""
    x = wave.astype(jnp.float32)
    x = jnp.pad(x - cfg.preemphasis * jnp.concatenate([x[1:2], x[:-1]]), cfg.n_fft // 2, mode="reflect")
    n_frames = 1 + wave.shape[0] // cfg.hop_length
    idx = np.arange(n_frames)[:, None] * cfg.hop_length + np.arange(cfg.n_fft)[None, :]
    # torch.stft zero-pads a shorter window on both sides to n_fft, left (n_fft - win) // 2
    window = librosa.util.pad_center(hamming_window(cfg), size=cfg.n_fft)
    spec = jnp.fft.rfft(x[idx] * window, axis=-1)  # [frames, n_fft // 2 + 1]
    power = spec.real**2 + spec.imag**2
    return jnp.log(jnp.asarray(mel_filter_bank(cfg)) @ power.T + LOG_OFFSET)


def instance_norm(x: Float[Array, "c t"]) -> Float[Array, "c t"]:
    """``nn.InstanceNorm1d`` without affine: each row over time, biased variance."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + BN_EPS)


class Conv2d(eqx.Module):
    """Square-kernel 2-D convolution with 'same' padding, torch layout ``[out, in, k, k]``."""

    weight: Array
    bias: Array | None
    stride: int = eqx.field(static=True)

    def __init__(self, c_in: int, c_out: int, kernel: int, *, key, stride: int = 1, bias: bool = False):
        # Kaiming normal with fan_out, as the reference's _init_layers
        self.weight = jax.random.normal(key, (c_out, c_in, kernel, kernel)) * math.sqrt(2 / (c_out * kernel**2))
        self.bias = jnp.zeros(c_out) if bias else None
        self.stride = stride

    def __call__(self, x: Float[Array, "c_in h w"]) -> Float[Array, "c_out h2 w2"]:
        p = self.weight.shape[-1] // 2
        y = jax.lax.conv_general_dilated(x[None], self.weight, (self.stride, self.stride), [(p, p), (p, p)],
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))[0]
        return y if self.bias is None else y + self.bias[:, None, None]


class BatchNorm(eqx.Module):
    """Inference-mode BatchNorm over axis 0 (channels) of ``[c, ...]``, with torch's running statistics."""

    weight: Array
    bias: Array
    running_mean: Array
    running_var: Array

    def __init__(self, channels: int):
        self.weight, self.bias = jnp.ones(channels), jnp.zeros(channels)
        self.running_mean, self.running_var = jnp.zeros(channels), jnp.ones(channels)

    def __call__(self, x: Float[Array, "c ..."]) -> Float[Array, "c ..."]:
        shape = (-1,) + (1,) * (x.ndim - 1)
        scale = self.weight * jax.lax.rsqrt(self.running_var + BN_EPS)
        return (x - self.running_mean.reshape(shape)) * scale.reshape(shape) + self.bias.reshape(shape)


class Linear(eqx.Module):
    """``nn.Linear`` (weight ``[out, in]``); with ``pointwise`` an ``nn.Conv1d`` of kernel 1
    (weight ``[out, in, 1]``) applied to ``[in, time]``."""

    weight: Array
    bias: Array

    def __init__(self, d_in: int, d_out: int, *, key, pointwise: bool = False):
        shape = (d_out, d_in, 1) if pointwise else (d_out, d_in)
        self.weight = jax.random.normal(key, shape) / math.sqrt(3 * d_in)  # torch's U(+-1/sqrt(in)) variance
        self.bias = jnp.zeros(d_out)

    def __call__(self, x: Float[Array, "d_in ..."]) -> Float[Array, "d_out ..."]:
        w = self.weight[..., 0] if self.weight.ndim == 3 else self.weight
        return jnp.tensordot(w, x, axes=1) + self.bias.reshape((-1,) + (1,) * (x.ndim - 1))


class SELayer(eqx.Module):
    """Squeeze-excitation: channel gates from the global mean through c -> c / reduction -> c."""

    fc1: Linear
    fc2: Linear

    def __init__(self, channels: int, reduction: int, *, key):
        k1, k2 = jax.random.split(key)
        self.fc1 = Linear(channels, channels // reduction, key=k1)
        self.fc2 = Linear(channels // reduction, channels, key=k2)

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, "c h w"]:
        gate = jax.nn.sigmoid(self.fc2(jax.nn.relu(self.fc1(x.mean(axis=(1, 2))))))
        return x * gate[:, None, None]


class SEBasicBlock(eqx.Module):
    conv1: Conv2d
    bn1: BatchNorm
    conv2: Conv2d
    bn2: BatchNorm
    se: SELayer
    downsample_conv: Conv2d | None  # coqui's downsample.0 / downsample.1
    downsample_bn: BatchNorm | None

    def __init__(self, c_in: int, c_out: int, stride: int, reduction: int, *, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.conv1 = Conv2d(c_in, c_out, 3, stride=stride, key=k1)
        self.bn1 = BatchNorm(c_out)
        self.conv2 = Conv2d(c_out, c_out, 3, key=k2)
        self.bn2 = BatchNorm(c_out)
        self.se = SELayer(c_out, reduction, key=k3)
        shortcut = stride != 1 or c_in != c_out
        self.downsample_conv = Conv2d(c_in, c_out, 1, stride=stride, key=k4) if shortcut else None
        self.downsample_bn = BatchNorm(c_out) if shortcut else None

    def __call__(self, x: Float[Array, "c_in h w"]) -> Float[Array, "c_out h2 w2"]:
        out = self.bn1(jax.nn.relu(self.conv1(x)))  # ReLU before BN, as the reference
        out = self.se(self.bn2(self.conv2(out)))
        if self.downsample_conv is not None:
            x = self.downsample_bn(self.downsample_conv(x))
        return jax.nn.relu(out + x)


class AttentivePooling(eqx.Module):
    """Attentive statistics pooling over time (coqui's ``attention`` Sequential: indices 0, 2, 3)."""

    conv1: Linear
    bn: BatchNorm
    conv2: Linear

    def __init__(self, channels: int, hidden: int, *, key):
        k1, k2 = jax.random.split(key)
        self.conv1 = Linear(channels, hidden, pointwise=True, key=k1)
        self.bn = BatchNorm(hidden)
        self.conv2 = Linear(hidden, channels, pointwise=True, key=k2)

    def __call__(self, x: Float[Array, "c t"]) -> Float[Array, " two_c"]:
        w = jax.nn.softmax(self.conv2(self.bn(jax.nn.relu(self.conv1(x)))), axis=-1)
        mu = jnp.sum(x * w, axis=-1)
        sigma = jnp.sqrt(jnp.maximum(jnp.sum(x * x * w, axis=-1) - mu * mu, STD_CLAMP))
        return jnp.concatenate([mu, sigma])


class SpeakerEncoder(eqx.Module):
    """One 16 kHz waveform ``[samples]`` (more than ``n_fft // 2``) -> unit-norm embedding ``[proj_dim]``."""

    conv1: Conv2d
    bn1: BatchNorm
    layers: list[list[SEBasicBlock]]  # coqui's layer1 .. layer4
    attention: AttentivePooling
    fc: Linear
    config: SpeakerEncoderConfig = eqx.field(static=True)

    def __init__(self, config: SpeakerEncoderConfig, *, key: PRNGKeyArray):
        cfg = self.config = config
        k_conv, k_layers, k_att, k_fc = jax.random.split(key, 4)
        self.conv1 = Conv2d(1, cfg.num_filters[0], 3, bias=True, key=k_conv)
        self.bn1 = BatchNorm(cfg.num_filters[0])
        keys = iter(jax.random.split(k_layers, sum(cfg.layers)))
        c_in, self.layers = cfg.num_filters[0], []
        for stage, (n, c) in enumerate(zip(cfg.layers, cfg.num_filters)):  # stride 2 opens stages 2-4
            self.layers.append([SEBasicBlock(c_in if i == 0 else c, c, 2 if stage and i == 0 else 1,
                                             cfg.se_reduction, key=next(keys)) for i in range(n)])
            c_in = c
        self.attention = AttentivePooling(cfg.pooled_channels, cfg.attention_channels, key=k_att)
        self.fc = Linear(2 * cfg.pooled_channels, cfg.proj_dim, key=k_fc)

    def __call__(self, wave: Float[Array, " samples"]) -> Float[Array, " proj_dim"]:
        x = instance_norm(log_mel_spectrogram(wave, self.config))[None]  # [1, mels, frames]
        x = self.bn1(jax.nn.relu(self.conv1(x)))
        for stage in self.layers:
            for block in stage:
                x = block(x)
        c, h, t = x.shape
        x = self.fc(self.attention(x.reshape(c * h, t)))
        return x / jnp.maximum(jnp.linalg.norm(x), 1e-12)


@eqx.filter_jit
def _embed(encoder: SpeakerEncoder, wave: Float[Array, " samples"]) -> Float[Array, " proj_dim"]:
    return encoder(wave)  # one compile per (model structure, length)


def speaker_embedding(encoder: SpeakerEncoder, waves: list[np.ndarray], sample_rate: int) -> np.ndarray:
    """XTTS-v2's decoder conditioning from reference waveforms ``[samples]`` at ``sample_rate``.

    Each is resampled to the encoder's rate (librosa; XTTS-v2 uses torchaudio's sinc resampler)
    and embedded; as ``Xtts.get_conditioning_latents``, the result is the plain mean of the
    unit-norm embeddings, not renormalised. Returns float32 ``[proj_dim]``.
    """
    cfg = encoder.config
    if not waves:
        raise UserError("speaker_embedding needs at least one reference waveform.")
    embeddings = []
    for i, wave in enumerate(waves):
        wave = np.asarray(wave, np.float32)
        if wave.ndim != 1:
            raise UserError(f"reference {i} has shape {wave.shape}; pass mono waveforms [samples].")
        wave = resample(wave, sample_rate, cfg.sample_rate)
        if wave.shape[0] <= cfg.n_fft // 2:
            raise UserError(f"reference {i} is {wave.shape[0]} samples at {cfg.sample_rate} Hz; the speaker "
                            f"encoder needs more than {cfg.n_fft // 2}.")
        embeddings.append(np.asarray(_embed(encoder, jnp.asarray(wave))))
    return np.mean(np.stack(embeddings), axis=0).astype(np.float32)
