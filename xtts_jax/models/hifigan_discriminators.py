"""HiFiGAN's discriminators and losses (Kong et al. 2020, arXiv 2010.05646; jik876/hifi-gan).

* Multi-period discriminator (MPD): for each period p in (2, 3, 5, 7, 11) the waveform is folded
  into a [T/p, p] grid and 2-D convs with (k, 1) kernels read each column; since such a kernel never
  mixes columns, we run 1-D convs over the p columns with ``vmap``.
* Multi-scale discriminator (MSD): grouped 1-D conv stacks on the raw waveform and on 2x and 4x
  average-pooled copies; the raw-scale one uses spectral norm, the others weight norm.
* Losses: least-squares GAN, feature matching (L1 between every intermediate feature map of real
  and generated audio) and mel L1, weighted 1 : 2 : 45 in the generator loss, as the paper.

Every ``__call__`` takes one unbatched waveform; the caller vmaps.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from xtts_jax.errors import UserError
from xtts_jax.models.hifigan import LRELU_SLOPE, Conv1d

LAMBDA_FM, LAMBDA_MEL = 2.0, 45.0  # paper, Section 2.4

# MSD layers (out channels, kernel, stride, groups), as jik876's DiscriminatorS
_SCALE_LAYERS = ((128, 15, 1, 1), (128, 41, 2, 4), (256, 41, 2, 16), (512, 41, 4, 16),
                 (1024, 41, 4, 16), (1024, 41, 1, 16), (1024, 5, 1, 1))
_PERIOD_CHANNELS = (32, 128, 512, 1024, 1024)  # strides 3, 3, 3, 3, 1; kernel (5, 1)


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    n_scales: int = 3
    width_divisor: int = 1  # divide every channel count (tiny test models); 1 = the paper's widths

    def __post_init__(self):
        if self.width_divisor < 1 or self.width_divisor & (self.width_divisor - 1):
            raise UserError(f"width_divisor must be a power of two, got {self.width_divisor}.")
        if not self.periods or self.n_scales < 1:
            raise UserError("the discriminator needs at least one period and one scale.")


Features = list[Array]


class PeriodDiscriminator(eqx.Module):
    convs: list[Conv1d]
    conv_post: Conv1d
    period: int = eqx.field(static=True)

    def __init__(self, period: int, divisor: int = 1, *, key: PRNGKeyArray):
        keys = jax.random.split(key, len(_PERIOD_CHANNELS) + 1)
        chans = [1] + [max(c // divisor, 1) for c in _PERIOD_CHANNELS]
        strides = (3, 3, 3, 3, 1)
        self.convs = [Conv1d(chans[i], chans[i + 1], 5, stride=s, padding=2, std=None, key=keys[i])
                      for i, s in enumerate(strides)]
        self.conv_post = Conv1d(chans[-1], 1, 3, padding=1, std=None, key=keys[-1])
        self.period = period

    def __call__(self, wave: Float[Array, " samples"]) -> tuple[Array, Features]:
        p, t = self.period, wave.shape[0]
        if t % p:  # reflect-pad to whole periods, as the reference
            wave = jnp.pad(wave, (0, p - t % p), mode="reflect")
        x = wave.reshape(-1, p).T[:, None, :]  # [p columns, 1 channel, T/p]
        fmaps = []
        for conv in self.convs:
            x = jax.nn.leaky_relu(jax.vmap(conv)(x), LRELU_SLOPE)
            fmaps.append(x)
        x = jax.vmap(self.conv_post)(x)
        fmaps.append(x)
        return jnp.moveaxis(x, 0, -1).reshape(-1), fmaps  # torch's flatten order: time, then column


def spectral_normalised(w: Array, n_iter: int = 4) -> Array:
    """``w / sigma_max(w)`` with sigma from power iteration on ``w`` as an [out, in * k] matrix.

    torch's spectral_norm keeps the power-iteration vector between steps (one iteration each);
    a pure step has no such state, so a few iterations from a fixed start run every call.
    As torch, the singular vectors are constants for the gradient.
    """
    m = w.reshape(w.shape[0], -1)
    u = jnp.ones((m.shape[0],), w.dtype) / jnp.sqrt(m.shape[0])
    mm = jax.lax.stop_gradient(m)
    for _ in range(n_iter):
        v = mm.T @ u
        v = v / (jnp.linalg.norm(v) + 1e-12)
        u = mm @ v
        u = u / (jnp.linalg.norm(u) + 1e-12)
    return w / (u @ m @ v)


class ScaleDiscriminator(eqx.Module):
    convs: list[Conv1d]
    conv_post: Conv1d
    spectral: bool = eqx.field(static=True)

    def __init__(self, spectral: bool, divisor: int = 1, *, key: PRNGKeyArray):
        keys = jax.random.split(key, len(_SCALE_LAYERS) + 1)
        c_in, self.convs = 1, []
        for (c, k, s, g), kk in zip(_SCALE_LAYERS, keys):
            c = max(c // divisor, 1)
            self.convs.append(Conv1d(c_in, c, k, stride=s, padding=(k - 1) // 2, groups=min(g, c_in),
                                     weight_norm=not spectral, std=None, key=kk))
            c_in = c
        self.conv_post = Conv1d(c_in, 1, 3, padding=1, weight_norm=not spectral, std=None, key=keys[-1])
        self.spectral = spectral

    def __call__(self, wave: Float[Array, " samples"]) -> tuple[Array, Features]:
        x, fmaps = wave[None], []
        for conv in self.convs:
            x = jax.nn.leaky_relu(self._conv(conv, x), LRELU_SLOPE)
            fmaps.append(x)
        x = self._conv(self.conv_post, x)
        fmaps.append(x)
        return x.reshape(-1), fmaps

    def _conv(self, conv: Conv1d, x: Array) -> Array:
        if self.spectral:
            conv = eqx.tree_at(lambda c: c.weight, conv, spectral_normalised(conv.weight))
        return conv(x)


def avg_pool(x: Float[Array, " t"]) -> Float[Array, " t_half"]:
    """``AvgPool1d(4, 2, padding=2)`` with torch's count_include_pad: length t // 2 + 1."""
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (4,), (2,), [(2, 2)]) / 4.0


class HifiganDiscriminators(eqx.Module):
    """MPD and MSD together: one waveform -> (scores of every sub-discriminator, feature maps)."""

    periods: list[PeriodDiscriminator]
    scales: list[ScaleDiscriminator]

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig(), *, key: PRNGKeyArray):
        pkey, skey = jax.random.split(key)
        d = config.width_divisor
        self.periods = [PeriodDiscriminator(p, d, key=k)
                        for p, k in zip(config.periods, jax.random.split(pkey, len(config.periods)))]
        self.scales = [ScaleDiscriminator(i == 0, d, key=k)
                       for i, k in enumerate(jax.random.split(skey, config.n_scales))]

    def __call__(self, wave: Float[Array, " samples"]) -> tuple[list[Array], list[Features]]:
        outs, fmaps = [], []
        for disc in self.periods:
            o, f = disc(wave)
            outs.append(o)
            fmaps.append(f)
        x = wave
        for i, disc in enumerate(self.scales):
            if i:
                x = avg_pool(x)
            o, f = disc(x)
            outs.append(o)
            fmaps.append(f)
        return outs, fmaps


def discriminator_loss(real: list[Array], fake: list[Array]) -> Array:
    """Least-squares GAN: real scores towards 1, generated towards 0, summed over discriminators."""
    return sum(jnp.mean((1.0 - r) ** 2) + jnp.mean(f ** 2) for r, f in zip(real, fake))


def generator_adversarial_loss(fake: list[Array]) -> Array:
    return sum(jnp.mean((1.0 - f) ** 2) for f in fake)


def feature_matching_loss(real: list[Features], fake: list[Features]) -> Array:
    """Sum over discriminators and layers of mean |real - generated| feature maps (unweighted)."""
    return sum(jnp.mean(jnp.abs(r - f)) for rs, fs in zip(real, fake) for r, f in zip(rs, fs))


def mel_l1(mel_real: Array, mel_fake: Array) -> Array:
    return jnp.mean(jnp.abs(mel_real - mel_fake))
