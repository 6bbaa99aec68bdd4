"""HiFiGAN generator: features in, waveform out, in Equinox.

Architecture as Kong et al. 2020 (arXiv 2010.05646) and the authors' code (jik876/hifi-gan):
conv_pre -> [leaky ReLU 0.1 -> transposed conv upsample -> multi-receptive-field fusion (mean of
resblocks with different kernels and dilations)] per stage -> leaky ReLU (slope 0.01, torch's
default, as the reference) -> conv_post -> tanh.

XTTS-v2's decoder (coqui TTS ``HifiDecoder``) is the same generator reading 1024-d GPT latents,
linearly interpolated in time (x4 to mel-frame rate, then x24000/22050 to the output rate), with a
512-d speaker embedding added through 1x1 convs after conv_pre (``cond_layer``) and after each
upsampling layer (``conds``); its conv_pre and conv_post carry no weight norm, conv_post no bias.

Attribute names mirror the PyTorch state dicts (``conv_pre``, ``ups.{i}``, ``resblocks.{k}.convs1``)
so the importer in ``xtts_jax.convert.hifigan`` maps keys by path. Convolutions keep weight norm
(``gain``) for training; :func:`fold_weight_norm` folds it into plain weights for inference.
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from xtts_jax.errors import UserError

LRELU_SLOPE = 0.1  # inside the generator, as the paper; the last activation uses 0.01


@dataclasses.dataclass(frozen=True)
class HifiganConfig:
    """Generator hyper-parameters; names follow the original ``config_v1.json``."""

    in_channels: int = 80  # n_mels, or the GPT latent width for XTTS-v2
    sample_rate: int = 22050
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock: str = "1"  # "1": two convs per dilation; "2": one conv per dilation (V3)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    cond_channels: int = 0  # speaker embedding width; 0 = unconditioned
    cond_in_each_up_layer: bool = False
    conv_pre_weight_norm: bool = True
    conv_post_weight_norm: bool = True
    conv_post_bias: bool = True
    # Linear interpolation of the input in time before conv_pre, one factor after another
    # (XTTS-v2: 1024 / 256 = 4 latent-to-frame, then 24000 / 22050 resampling).
    input_interpolation: tuple[float, ...] = ()

    def __post_init__(self):
        if self.resblock not in ("1", "2"):
            raise UserError(f"resblock must be '1' or '2', got {self.resblock!r}.")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise UserError(
                f"upsample_rates {self.upsample_rates} and upsample_kernel_sizes "
                f"{self.upsample_kernel_sizes} must have the same length."
            )
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise UserError("resblock_kernel_sizes and resblock_dilation_sizes must have the same length.")
        want = 3 if self.resblock == "1" else 2
        if any(len(d) != want for d in self.resblock_dilation_sizes):
            raise UserError(f"resblock type {self.resblock} needs {want} dilations per block, got "
                            f"{self.resblock_dilation_sizes}.")
        if self.upsample_initial_channel % (2 ** len(self.upsample_rates)):
            raise UserError(f"upsample_initial_channel {self.upsample_initial_channel} must halve "
                            f"{len(self.upsample_rates)} times.")

    @property
    def hop_length(self) -> int:
        """Output samples per (interpolated) input frame."""
        return math.prod(self.upsample_rates)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HifiganConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise UserError(f"unknown HiFiGAN config keys {sorted(unknown)}.")
        tup = lambda v: tuple(tuple(x) if isinstance(x, (list, tuple)) else x for x in v)
        return cls(**{k: tup(v) if isinstance(v, list) else v for k, v in d.items()})


# Presets: V1-V3 as the authors' config_v{1,2,3}.json; xtts-v2 as coqui TTS's HifiDecoder.
PRESETS: dict[str, HifiganConfig] = {
    "v1": HifiganConfig(),
    "v2": HifiganConfig(upsample_initial_channel=128),
    "v3": HifiganConfig(
        upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8), upsample_initial_channel=256,
        resblock="2", resblock_kernel_sizes=(3, 5, 7), resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)),
    ),
    # for smoke tests and CPU runs: V1's layout at 1/16 of its width, two resblocks per stage
    "tiny": HifiganConfig(upsample_initial_channel=32, resblock_kernel_sizes=(3, 7),
                          resblock_dilation_sizes=((1, 3, 5), (1, 3, 5))),
    "xtts-v2": HifiganConfig(
        in_channels=1024, sample_rate=24000, cond_channels=512, cond_in_each_up_layer=True,
        conv_pre_weight_norm=False, conv_post_weight_norm=False, conv_post_bias=False,
        input_interpolation=(1024 / 256, 24000 / 22050),
    ),
}


def preset(name: str) -> HifiganConfig:
    if name not in PRESETS:
        raise UserError(f"unknown HiFiGAN preset {name!r}; choose one of {sorted(PRESETS)}.")
    return PRESETS[name]


class Conv1d(eqx.Module):
    """1-D convolution (or transposed convolution) with optional weight norm, torch layout.

    ``weight``: ``[out, in, k]`` for a conv, ``[in, out, k]`` for a transposed conv (as torch);
    with ``gain`` set the effective weight is ``gain * weight / ||weight||`` over all axes but 0
    (torch ``weight_norm``'s default ``dim=0``).
    """

    weight: Array
    gain: Array | None
    bias: Array | None
    stride: int = eqx.field(static=True)
    padding: int = eqx.field(static=True)
    dilation: int = eqx.field(static=True)
    groups: int = eqx.field(static=True)
    transposed: bool = eqx.field(static=True)

    def __init__(self, c_in, c_out, kernel, *, key, stride=1, padding=0, dilation=1, groups=1,
                 transposed=False, weight_norm=True, bias=True, std=0.01):
        shape = (c_in, c_out, kernel) if transposed else (c_out, c_in // groups, kernel)
        fan_in = c_in // groups * kernel
        # One draw per conv for weight and bias: on CPU each random op costs an XLA compile of its
        # own (about a second on a busy 2-core machine), which made V1's init take a minute.
        # std: Normal(0, std) as the generator's init_weights (0.01); None: torch's default conv
        # init, whose U(+-1/sqrt(fan_in)) we match in variance with a normal (discriminators).
        n = math.prod(shape)
        draw = jax.random.normal(key, (n + c_out,))
        scale = 1.0 / math.sqrt(3 * fan_in)
        self.weight = draw[:n].reshape(shape) * (scale if std is None else std)
        self.gain = _norm(self.weight) if weight_norm else None
        self.bias = draw[n:] * scale if bias else None
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.groups, self.transposed = groups, transposed

    def effective_weight(self) -> Array:
        if self.gain is None:
            return self.weight
        return self.gain * self.weight / _norm(self.weight)

    def __call__(self, x: Float[Array, "c_in time"], channels_last: bool = False) -> Float[Array, "c_out time_out"]:
        """``x`` ``[c_in, time]`` as torch, or ``[time, c_in]`` with ``channels_last`` (then the
        result is ``[time_out, c_out]``): the layout XLA's CPU backend convolves in, so a network
        that stays in it pays no transposes around each convolution."""
        if channels_last:
            return self._channels_last(x)
        w = self.effective_weight()
        if self.transposed:
            # torch ConvTranspose1d(stride s, padding p) == dilate the input by s, pad k-1-p both
            # sides, correlate with the flipped, in/out-swapped kernel: length (T-1)s - 2p + k.
            k = w.shape[-1]
            w = jnp.flip(jnp.swapaxes(w, 0, 1), axis=-1)
            pad = k - 1 - self.padding
            y = jax.lax.conv_general_dilated(
                x[None], w, window_strides=(1,), padding=[(pad, pad)], lhs_dilation=(self.stride,),
                dimension_numbers=("NCH", "OIH", "NCH"))[0]
        else:
            y = jax.lax.conv_general_dilated(
                x[None], w, window_strides=(self.stride,), padding=[(self.padding, self.padding)],
                rhs_dilation=(self.dilation,), feature_group_count=self.groups,
                dimension_numbers=("NCH", "OIH", "NCH"))[0]
        return y if self.bias is None else y + self.bias[:, None]

    def _channels_last(self, x: Float[Array, "time c_in"]) -> Float[Array, "time_out c_out"]:
        w = self.effective_weight()
        if self.transposed:
            y = conv_transpose_polyphase(x, w, self.stride, self.padding)
        else:
            y = jax.lax.conv_general_dilated(
                x[None], jnp.transpose(w, (2, 1, 0)), window_strides=(self.stride,),
                padding=[(self.padding, self.padding)], rhs_dilation=(self.dilation,),
                feature_group_count=self.groups, dimension_numbers=("NWC", "WIO", "NWC"))[0]
        return y if self.bias is None else y + self.bias


def conv_transpose_polyphase(x: Float[Array, "t c_in"], w: Float[Array, "c_in c_out k"], stride: int,
                          padding: int) -> Float[Array, "t_out c_out"]:
    """torch ``ConvTranspose1d`` channels last, without the zeros: input row ``t`` adds ``x[t] @ w[:, :, m]``
    to output row ``t * stride + m - padding``. One product ``[t, c_in] x [c_in, k * c_out]`` gives
    every tap; taps ``j * stride + r`` land in block ``t + j`` at row ``r``, so the blocks are summed
    with shifts (an overlap-add). XLA writes a transposed convolution as a convolution over the
    input dilated with zeros, which multiplies zeros in ``stride - 1`` of every ``stride`` rows."""
    c_in, c_out, k = w.shape
    t = x.shape[0]
    blocks = -(-k // stride)
    w = jnp.pad(w, ((0, 0), (0, 0), (0, blocks * stride - k)))  # taps past k are zero
    z = (x @ jnp.transpose(w, (0, 2, 1)).reshape(c_in, blocks * stride * c_out)).reshape(t, blocks, stride * c_out)
    y = sum(jnp.pad(z[:, j], ((j, blocks - 1 - j), (0, 0))) for j in range(blocks))
    y = y.reshape((t + blocks - 1) * stride, c_out)
    return y[padding: padding + (t - 1) * stride + k - 2 * padding]


def _norm(w: Array) -> Array:
    return jnp.sqrt(jnp.sum(w * w, axis=tuple(range(1, w.ndim)), keepdims=True))


def _same(kernel: int, dilation: int) -> int:
    return (kernel * dilation - dilation) // 2


class ResBlock1(eqx.Module):
    """Per dilation: lrelu -> dilated conv -> lrelu -> conv -> residual add (paper Fig. 1)."""

    convs1: list[Conv1d]
    convs2: list[Conv1d]

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...], *, key):
        k1, k2 = jax.random.split(key)
        self.convs1 = [Conv1d(channels, channels, kernel, padding=_same(kernel, d), dilation=d, key=k)
                       for d, k in zip(dilations, jax.random.split(k1, len(dilations)))]
        self.convs2 = [Conv1d(channels, channels, kernel, padding=_same(kernel, 1), key=k)
                       for k in jax.random.split(k2, len(dilations))]

    def __call__(self, x: Float[Array, "c t"], channels_last: bool = False) -> Float[Array, "c t"]:
        for c1, c2 in zip(self.convs1, self.convs2):
            h = c1(jax.nn.leaky_relu(x, LRELU_SLOPE), channels_last)
            x = x + c2(jax.nn.leaky_relu(h, LRELU_SLOPE), channels_last)
        return x


class ResBlock2(eqx.Module):
    """Per dilation: lrelu -> dilated conv -> residual add (V3's lighter block)."""

    convs: list[Conv1d]

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...], *, key):
        self.convs = [Conv1d(channels, channels, kernel, padding=_same(kernel, d), dilation=d, key=k)
                      for d, k in zip(dilations, jax.random.split(key, len(dilations)))]

    def __call__(self, x: Float[Array, "c t"], channels_last: bool = False) -> Float[Array, "c t"]:
        for c in self.convs:
            x = x + c(jax.nn.leaky_relu(x, LRELU_SLOPE), channels_last)
        return x


class HifiganGenerator(eqx.Module):
    """Features ``[in_channels, frames]`` (+ speaker embedding) -> waveform ``[samples]`` in [-1, 1]."""

    conv_pre: Conv1d
    ups: list[Conv1d]
    resblocks: list[ResBlock1 | ResBlock2]  # flat, stage-major, as the reference's ModuleList
    conv_post: Conv1d
    cond_layer: Conv1d | None
    conds: list[Conv1d] | None
    config: HifiganConfig = eqx.field(static=True)

    def __init__(self, config: HifiganConfig, *, key: PRNGKeyArray):
        cfg = self.config = config
        keys = iter(jax.random.split(key, 8))
        ch = cfg.upsample_initial_channel
        self.conv_pre = Conv1d(cfg.in_channels, ch, 7, padding=3, weight_norm=cfg.conv_pre_weight_norm,
                               key=next(keys))
        widths = [ch // 2 ** (i + 1) for i in range(len(cfg.upsample_rates))]
        self.ups = [
            Conv1d(ch // 2 ** i, widths[i], k, stride=u, padding=(k - u) // 2, transposed=True, key=kk)
            for i, (u, k, kk) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes,
                                               jax.random.split(next(keys), len(widths))))
        ]
        block = ResBlock1 if cfg.resblock == "1" else ResBlock2
        rkeys = iter(jax.random.split(next(keys), len(widths) * len(cfg.resblock_kernel_sizes)))
        self.resblocks = [block(w, k, d, key=next(rkeys)) for w in widths
                          for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes)]
        self.conv_post = Conv1d(widths[-1], 1, 7, padding=3, weight_norm=cfg.conv_post_weight_norm,
                                bias=cfg.conv_post_bias, key=next(keys))
        # Speaker conditioning convs are plain (no weight norm) in coqui TTS.
        cond = cfg.cond_channels
        self.cond_layer = (Conv1d(cond, ch, 1, weight_norm=False, key=next(keys)) if cond else None)
        self.conds = ([Conv1d(cond, w, 1, weight_norm=False, key=k)
                       for w, k in zip(widths, jax.random.split(next(keys), len(widths)))]
                      if cond and cfg.cond_in_each_up_layer else None)

    def __call__(self, features: Float[Array, "in_channels frames"],
                 speaker: Float[Array, " cond_channels"] | None = None,
                 channels_last: bool | None = None) -> Float[Array, " samples"]:
        cfg = self.config
        x = features
        for factor in cfg.input_interpolation:
            x = interpolate_linear(x, factor)
        if cfg.cond_channels and speaker is None:
            raise UserError(f"this decoder needs a {cfg.cond_channels}-d speaker embedding.")
        # By default on CPU the whole network runs channels last ([time, channels]), the layout
        # XLA's CPU backend convolves in (no transposes around each convolution; bench/bench_conv1d_cpu.py);
        # elsewhere torch's [channels, time], as before.
        last = jax.default_backend() == "cpu" if channels_last is None else channels_last
        if last:
            x = x.T
        g = None if speaker is None else (speaker[None, :] if last else speaker[:, None])
        x = self.conv_pre(x, last)
        if self.cond_layer is not None:
            x = x + self.cond_layer(g, last)
        n = len(cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(jax.nn.leaky_relu(x, LRELU_SLOPE), last)
            if self.conds is not None:
                x = x + self.conds[i](g, last)
            # multi-receptive-field fusion: the mean over this stage's resblocks
            x = sum(rb(x, last) for rb in self.resblocks[i * n:(i + 1) * n]) / n
        x = self.conv_post(jax.nn.leaky_relu(x, 0.01), last)
        return jnp.tanh(x[:, 0] if last else x[0])


def interpolate_linear(x: Float[Array, "c t"], scale: float) -> Float[Array, "c t_out"]:
    """``torch.nn.functional.interpolate(mode="linear", scale_factor=scale)`` (align_corners False).

    As torch: output length ``floor(t * scale)``; source position ``(i + 0.5) / scale - 0.5``,
    clamped at 0, using the given scale rather than the length ratio; and when the length does
    not change, torch copies the input unchanged whatever the scale (its same-size shortcut).
    """
    t = x.shape[-1]
    t_out = int(math.floor(t * scale))
    if t_out == t:
        return x
    src = np.maximum((np.arange(t_out) + 0.5) / scale - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    frac = (src - i0).astype(np.float32)
    i1 = np.minimum(i0 + 1, t - 1)
    i0 = np.minimum(i0, t - 1)
    return x[:, i0] * (1.0 - frac) + x[:, i1] * frac


def fold_weight_norm(model: eqx.Module) -> eqx.Module:
    """Replace every weight-normed conv by a plain one with the same effective weight (inference)."""
    is_conv = lambda m: isinstance(m, Conv1d)

    def fold(m):
        if is_conv(m) and m.gain is not None:
            return eqx.tree_at(lambda c: (c.weight, c.gain), m, (m.effective_weight(), None),
                               is_leaf=lambda v: v is None)
        return m

    return jax.tree_util.tree_map(fold, model, is_leaf=is_conv)
