"""A phoneme recogniser over audio codes, to choose among sampled candidates.

Sampling draws several code sequences for a sentence; some keep every word, some slur one. A
recogniser trained with CTC (Graves et al., 2006) to read the spoken tokens from *real* DVAE codes
scores each candidate by how well the sentence's own tokens explain it, and the synthesizer keeps
the best: Tortoise's reranking of autoregressive samples (Betker, 2023, with its CLVP), done here by
a recogniser's likelihood instead of a contrastive score. Nothing but the generator's codes is read.

The network is small and local: a code embedding, then residual blocks of a 1-D convolution
(pre-norm, GELU) over time, then a linear layer to the text vocabulary plus the CTC blank. Padded
positions are zeroed before every convolution, so a row scores the same alone or in a padded batch.
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from xtts_jax.errors import UserError
from xtts_jax.models.layers import Dense, LayerNorm


@dataclasses.dataclass(frozen=True)
class RecognizerConfig:
    num_audio_codes: int = 1024  # the DVAE's codebook
    num_labels: int = 80  # the generator's text vocabulary; the CTC blank is id num_labels
    n_embd: int = 192
    n_layer: int = 5
    kernel_size: int = 5

    def __post_init__(self):
        for name in ("num_audio_codes", "num_labels", "n_embd", "n_layer"):
            if getattr(self, name) < 1:
                raise UserError(f"recogniser {name} must be at least 1, not {getattr(self, name)}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise UserError(f"recogniser kernel_size must be odd and positive, not {self.kernel_size}")

    @property
    def blank(self) -> int:
        return self.num_labels

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RecognizerConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise UserError(f"unknown recogniser config field(s): {', '.join(unknown)}")
        return cls(**d)


class ConvBlock(eqx.Module):
    """``x + proj(gelu(conv(norm(x))))``; the convolution is ``[k, C, C]`` (width, in, out)."""

    norm: LayerNorm
    conv: Float[Array, "k C C"]
    conv_bias: Float[Array, " C"]
    proj: Dense

    def __init__(self, n_embd: int, kernel_size: int, proj_std: float, *, key: PRNGKeyArray):
        k_conv, k_proj = jax.random.split(key)
        self.norm = LayerNorm(n_embd, bias=True)
        self.conv = jax.random.normal(k_conv, (kernel_size, n_embd, n_embd)) / math.sqrt(kernel_size * n_embd)
        self.conv_bias = jnp.zeros((n_embd,))
        self.proj = Dense(n_embd, n_embd, bias=True, std=proj_std, key=k_proj)

    def __call__(self, x: Float[Array, "T C"], valid: Float[Array, "T 1"]) -> Float[Array, "T C"]:
        h = self.norm(x) * valid  # zero past the row's end: "same" padding as if the row stood alone
        pad = self.conv.shape[0] // 2
        h = jax.lax.conv_general_dilated(h[None], self.conv, window_strides=(1,), padding=[(pad, pad)],
                                         dimension_numbers=("NWC", "WIO", "NWC"))[0] + self.conv_bias
        return x + self.proj(jax.nn.gelu(h))


class CodeRecognizer(eqx.Module):
    embed: Float[Array, "V C"]
    blocks: tuple[ConvBlock, ...]
    norm: LayerNorm
    out: Dense
    config: RecognizerConfig = eqx.field(static=True)

    def __init__(self, cfg: RecognizerConfig, *, key: PRNGKeyArray):
        keys = jax.random.split(key, cfg.n_layer + 2)
        self.config = cfg
        self.embed = 0.02 * jax.random.normal(keys[0], (cfg.num_audio_codes, cfg.n_embd))
        proj_std = 0.02 / math.sqrt(2 * cfg.n_layer)
        self.blocks = tuple(ConvBlock(cfg.n_embd, cfg.kernel_size, proj_std, key=k) for k in keys[1:-1])
        self.norm = LayerNorm(cfg.n_embd, bias=True)
        self.out = Dense(cfg.n_embd, cfg.num_labels + 1, bias=True, std=0.02, key=keys[-1])

    def __call__(self, codes: Int[Array, " T"], length: Int[Array, ""]) -> Float[Array, "T L"]:
        """Log-probabilities over the labels and the blank at each code position (rows past
        ``length`` are padding: computed, not read)."""
        valid = (jnp.arange(codes.shape[0]) < length)[:, None].astype(jnp.float32)
        x = self.embed[jnp.clip(codes, 0, self.config.num_audio_codes - 1)]
        for block in self.blocks:
            x = block(x, valid)
        return jax.nn.log_softmax(self.out(self.norm(x)).astype(jnp.float32), axis=-1)


def ctc_per_label(model: CodeRecognizer, codes: Int[Array, "B T"], code_len: Int[Array, " B"],
                  labels: Int[Array, "B S"], label_len: Int[Array, " B"]) -> Float[Array, " B"]:
    """Each row's CTC negative log-likelihood of its labels, divided by their number: lower is a
    better reading. A row too short for its labels scores about 1e5 per label (optax's floor)."""
    logp = jax.vmap(model)(codes, code_len)
    code_pad = (jnp.arange(codes.shape[1])[None] >= code_len[:, None]).astype(jnp.float32)
    label_pad = (jnp.arange(labels.shape[1])[None] >= label_len[:, None]).astype(jnp.float32)
    nll = optax.ctc_loss(logp, code_pad, labels, label_pad, blank_id=model.config.blank)
    return nll / jnp.maximum(label_len, 1)


def pad_rows(rows: list[list[int]], width: int | None = None, fill: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``[B, width]`` int32 rows padded with ``fill``, and their lengths (``width``: the longest)."""
    width = max([width or 0, 1, *map(len, rows)])
    out = np.full((len(rows), width), fill, np.int32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out, np.asarray([len(r) for r in rows], np.int32)


def greedy_labels(logp: np.ndarray, length: int, blank: int) -> list[int]:
    """Best-path CTC reading of one row: argmax per position, repeats merged, blanks dropped."""
    best = np.asarray(logp[:length]).argmax(-1)
    return [int(b) for i, b in enumerate(best) if b != blank and (i == 0 or b != best[i - 1])]


def save_recognizer(model: CodeRecognizer, path: str, metadata: dict | None = None, dtype: str | None = None) -> None:
    """Weights as safetensors (``dtype``: how floats are stored), the config as metadata ``recognizer``."""
    from xtts_jax.weights import export_safetensors

    export_safetensors(model, path, {**(metadata or {}), "recognizer": model.config.to_dict()}, dtype)


def load_recognizer(path: str) -> CodeRecognizer:
    from xtts_jax.weights import load_safetensors, read_model_config

    cfg = RecognizerConfig.from_dict(read_model_config(path, "recognizer", "recogniser"))
    abstract = eqx.filter_eval_shape(lambda: CodeRecognizer(cfg, key=jax.random.key(0)))
    return load_safetensors(abstract, path, "recogniser checkpoint")
