"""Speaker conditioning from reference audio, as XTTS-v2: mel -> conditioning encoder -> perceiver.

reference log-mel ``[n_mels, frames]`` -> 1x1 conv to ``n_embd`` -> ``n_blocks`` attention blocks
(GroupNorm, multi-head self-attention over time, zero-initialised output projection, residual from
the GroupNorm output as XTTS-v2's latent encoder;
Tortoise's ``AttentionBlock``, its per-head qkv channel layout included) -> perceiver resampler (``num_latents`` learned queries that attend
over the frames and themselves, then a GEGLU feed-forward, ``depth`` times, then RMSNorm) ->
``[num_latents, n_embd]`` vectors that the TTS model prepends to the text. XTTS-v2: 6 blocks of
16 heads at d 1024, 32 latents, perceiver depth 2 with 8 heads of 64, feed-forward x4; references
cut into 4-second chunks whose latents are averaged (``gpt_cond_chunk_len``), at most 30 s.
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from xtts_jax.audio.mel import MelConfig, log_mel
from xtts_jax.errors import UserError
from xtts_jax.models.layers import Dense


CHUNKING = ("whole", "xtts")


@dataclasses.dataclass(frozen=True)
class ConditioningConfig:
    n_mels: int = 80
    n_embd: int = 1024
    n_head: int = 16
    n_blocks: int = 6
    num_groups: int = 32  # GroupNorm groups in the attention blocks, as Tortoise's normalization()
    num_latents: int = 32
    perceiver_depth: int = 2
    perceiver_heads: int = 8
    perceiver_head_dim: int = 64
    ff_mult: int = 4
    chunk_seconds: float = 4.0
    max_seconds: float = 30.0
    # The reference log-mel. Our models read the DVAE's features (the default); XTTS-v2 reads
    # ``wav_to_mel_cloning``: n_fft 2048, win 1024, hop 256, torchaudio's HTK scale with slaney
    # area norm, then divides each channel by the ``mel_stats`` stored in its model.pth.
    mel: MelConfig | None = None  # None: the DVAE's MelConfig() with n_mels mels
    mel_norms: tuple[float, ...] = ()  # per-channel divisor (XTTS-v2's mel_stats); empty: none
    # How references become chunks. "whole": each reference is cut into whole chunk_seconds
    # pieces, the remainder dropped (our training clips are single 3-6 s pieces). "xtts": as
    # XTTS-v2's get_conditioning_latents: each reference cut to max_ref_seconds, all joined, the
    # first max_seconds cut into chunk_seconds pieces, a last piece kept if >= 0.33 s.
    chunking: str = "whole"
    max_ref_seconds: float = 30.0
    # Width of the vectors handed out (the speaker interface): 0 is n_embd (XTTS-v2: 1024 both);
    # else a linear map from the perceiver's n_embd, so a narrow model still speaks 1024-d vectors.
    out_dim: int = 0

    def __post_init__(self):
        if self.n_embd % self.n_head or self.n_embd % self.num_groups:
            raise UserError(f"conditioning n_embd {self.n_embd} must divide by n_head {self.n_head} "
                            f"and num_groups {self.num_groups}")
        if self.mel is not None and self.mel.n_mels != self.n_mels:
            raise UserError(f"the conditioning encoder reads {self.n_mels} mels, its mel config has {self.mel.n_mels}")
        if self.mel_norms and len(self.mel_norms) != self.n_mels:
            raise UserError(f"mel_norms has {len(self.mel_norms)} values for {self.n_mels} mels")
        if self.chunking not in CHUNKING:
            raise UserError(f"conditioning chunking {self.chunking!r} is not one of {', '.join(CHUNKING)}")

    @property
    def width(self) -> int:
        """Width of the conditioning vectors this encoder returns."""
        return self.out_dim or self.n_embd

    @property
    def mel_config(self) -> MelConfig:
        return self.mel or MelConfig(n_mels=self.n_mels)

    @property
    def ff_width(self) -> int:
        return int(self.n_embd * self.ff_mult * 2 / 3)  # GEGLU keeps the parameters of a x4 MLP

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ConditioningConfig":
        d = dict(d)
        d["mel"] = MelConfig(**d["mel"]) if d.get("mel") else None
        d["mel_norms"] = tuple(float(x) for x in d.get("mel_norms", ()))
        return cls(**d)


PRESETS = {
    "xtts-v2": ConditioningConfig(),
    "tiny": ConditioningConfig(n_embd=64, n_head=4, n_blocks=2, num_groups=8, num_latents=8,
                               perceiver_heads=4, perceiver_head_dim=16, ff_mult=2),
}
# XTTS-v2's reference features (coqui TTS ``xtts.py``: ``wav_to_mel_cloning`` in ``get_gpt_cond_latents``)
XTTS_MEL = MelConfig(n_fft=2048, hop_length=256, win_length=1024, n_mels=80, fmin=0.0, fmax=8000.0,
                     htk=True, norm="slaney")
XTTS_MIN_CHUNK_SECONDS = 0.33  # a shorter last piece is skipped, as XTTS-v2


def _attend(q: Array, k: Array, v: Array, n_head: int) -> Array:
    """Softmax attention without a mask. q [Tq, H*D], k/v [Tk, H*D] -> [Tq, H*D].

    On CPU as two einsums around a float32 softmax: XLA's CPU backend has no fused attention, and
    this form trains the conditioning encoder faster than ``jax.nn.dot_product_attention``'s path
    (bench/bench_train_cpu.py --shapes tts); elsewhere that function, which may pick a fused kernel."""
    split = lambda t: t.reshape(t.shape[0], n_head, -1)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    if jax.default_backend() != "cpu":
        return jax.nn.dot_product_attention(q, k, v).reshape(q.shape[0], -1)
    s = jnp.einsum("qhd,khd->hqk", q * (1 / math.sqrt(q.shape[-1])), k, preferred_element_type=jnp.float32)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    return jnp.einsum("hqk,khd->qhd", p, v).reshape(q.shape[0], -1)


class AttentionBlock(eqx.Module):
    norm: eqx.nn.GroupNorm
    qkv: Dense
    proj_out: Dense
    n_head: int = eqx.field(static=True)

    def __init__(self, cfg: ConditioningConfig, *, key: PRNGKeyArray):
        d = cfg.n_embd
        self.norm = eqx.nn.GroupNorm(cfg.num_groups, d)
        self.qkv = Dense(d, 3 * d, bias=True, std=1 / math.sqrt(d), key=key)
        # zero output projection, as Tortoise and XTTS-v2: each block starts as its GroupNorm
        self.proj_out = Dense(d, d, bias=True, std=0.0, key=key)
        self.n_head = cfg.n_head

    def __call__(self, x: Float[Array, "C T"]) -> Float[Array, "C T"]:
        # channels of qkv are grouped per head, [q_h, k_h, v_h] for each head in turn (Tortoise's
        # QKVAttentionLegacy), so XTTS-v2's weights copy in without a permutation
        xn = self.norm(x)
        qkv = self.qkv(xn.T)
        qkv = qkv.reshape(qkv.shape[0], self.n_head, 3, -1)
        q, k, v = (qkv[:, :, i].reshape(qkv.shape[0], -1) for i in range(3))
        # XTTS-v2's latent_encoder.AttentionBlock adds the *normalised* input back (it reassigns
        # x = norm(x) before the residual); Tortoise's arch_utils block adds the raw input.
        return xn + self.proj_out(_attend(q, k, v, self.n_head)).T


class ConditioningEncoder(eqx.Module):
    init: Dense  # the 1x1 conv from mels to n_embd
    blocks: tuple[AttentionBlock, ...]

    def __init__(self, cfg: ConditioningConfig, *, key: PRNGKeyArray):
        keys = jax.random.split(key, cfg.n_blocks + 1)
        self.init = Dense(cfg.n_mels, cfg.n_embd, bias=True, std=1 / math.sqrt(cfg.n_mels), key=keys[0])
        self.blocks = tuple(AttentionBlock(cfg, key=k) for k in keys[1:])

    def __call__(self, mel: Float[Array, "n_mels T"]) -> Float[Array, "C T"]:
        h = self.init(mel.T).T
        for block in self.blocks:
            h = block(h)
        return h


class PerceiverLayer(eqx.Module):
    to_q: Dense
    to_kv: Dense
    to_out: Dense
    ff_in: Dense
    ff_out: Dense
    n_head: int = eqx.field(static=True)

    def __init__(self, cfg: ConditioningConfig, *, key: PRNGKeyArray):
        d, inner, ff = cfg.n_embd, cfg.perceiver_heads * cfg.perceiver_head_dim, cfg.ff_width
        k = jax.random.split(key, 5)
        self.to_q = Dense(d, inner, bias=False, std=1 / math.sqrt(d), key=k[0])
        self.to_kv = Dense(d, 2 * inner, bias=False, std=1 / math.sqrt(d), key=k[1])
        self.to_out = Dense(inner, d, bias=False, std=1 / math.sqrt(inner), key=k[2])
        self.ff_in = Dense(d, 2 * ff, bias=True, std=1 / math.sqrt(d), key=k[3])
        self.ff_out = Dense(ff, d, bias=True, std=1 / math.sqrt(ff), key=k[4])
        self.n_head = cfg.perceiver_heads

    def __call__(self, latents: Float[Array, "N C"], context: Float[Array, "T C"]) -> Float[Array, "N C"]:
        # keys and values include the latents themselves (XTTS-v2: cross_attn_include_queries)
        k, v = jnp.split(self.to_kv(jnp.concatenate([context, latents])), 2, axis=-1)
        latents = latents + self.to_out(_attend(self.to_q(latents), k, v, self.n_head))
        x, gate = jnp.split(self.ff_in(latents), 2, axis=-1)
        return latents + self.ff_out(x * jax.nn.gelu(gate, approximate=False))


class PerceiverResampler(eqx.Module):
    latents: Float[Array, "N C"]
    layers: tuple[PerceiverLayer, ...]
    norm_gamma: Float[Array, " C"]

    def __init__(self, cfg: ConditioningConfig, *, key: PRNGKeyArray):
        keys = jax.random.split(key, cfg.perceiver_depth + 1)
        self.latents = 0.02 * jax.random.normal(keys[0], (cfg.num_latents, cfg.n_embd))
        self.layers = tuple(PerceiverLayer(cfg, key=k) for k in keys[1:])
        self.norm_gamma = jnp.ones((cfg.n_embd,))

    def __call__(self, context: Float[Array, "T C"]) -> Float[Array, "N C"]:
        x = self.latents
        for layer in self.layers:
            x = layer(x, context)
        # RMSNorm written as XTTS-v2's: l2-normalise, times sqrt(d), times a learned gain
        x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        return x * math.sqrt(x.shape[-1]) * self.norm_gamma


class Conditioner(eqx.Module):
    """Reference mel chunks -> averaged ``[num_latents, width]`` conditioning vectors."""

    encoder: ConditioningEncoder
    perceiver: PerceiverResampler
    out: Dense | None  # n_embd -> out_dim, when the interface is wider than the encoder
    config: ConditioningConfig = eqx.field(static=True)

    def __init__(self, cfg: ConditioningConfig, *, key: PRNGKeyArray):
        k1, k2 = jax.random.split(key)
        k3 = jax.random.fold_in(key, 2)  # a third key that leaves the first two as they always were
        self.encoder = ConditioningEncoder(cfg, key=k1)
        self.perceiver = PerceiverResampler(cfg, key=k2)
        self.out = Dense(cfg.n_embd, cfg.width, bias=False, std=1 / math.sqrt(cfg.n_embd), key=k3) \
            if cfg.width != cfg.n_embd else None
        self.config = cfg

    def __call__(self, mel: Float[Array, "n_mels T"]) -> Float[Array, "N C"]:
        """Latents of one reference chunk."""
        latents = self.perceiver(self.encoder(mel).T)
        return latents if self.out is None else self.out(latents)

    def from_chunks(self, chunks: Float[Array, "K n_mels T"]) -> Float[Array, "N C"]:
        """Mean of the chunks' latents (XTTS-v2 averages its 4-second chunks)."""
        return jax.vmap(self)(chunks).mean(0)


def _chunks(waves: list[np.ndarray], cfg: ConditioningConfig) -> list[np.ndarray]:
    sr = cfg.mel_config.sample_rate
    chunk, limit = int(cfg.chunk_seconds * sr), int(cfg.max_seconds * sr)
    if cfg.chunking == "xtts":
        joined = np.concatenate([w[:int(cfg.max_ref_seconds * sr)] for w in waves])[:limit]
        pieces = [joined[i:i + chunk] for i in range(0, len(joined), chunk)]
        return [p for p in pieces if len(p) >= XTTS_MIN_CHUNK_SECONDS * sr]
    waves = [w[:limit] for w in waves]
    chunk = min(chunk, min(len(w) for w in waves))  # a short reference sets the chunk length
    return [w[i:i + chunk] for w in waves for i in range(0, len(w) - chunk + 1, chunk)]


def reference_mels(waves: list[np.ndarray], cfg: ConditioningConfig) -> list[np.ndarray]:
    """Log-mel chunks (each ``[n_mels, frames]``, normalised by ``cfg.mel_norms``) of one or more
    reference waveforms at ``cfg.mel_config.sample_rate``, chunked as ``cfg.chunking`` says.

    "whole": each waveform (at most ``max_seconds``) is cut into whole ``chunk_seconds`` pieces;
    a remainder shorter than a chunk is dropped, unless a waveform is shorter than one chunk, in
    which case every chunk is cut to the shortest reference. "xtts": see :class:`ConditioningConfig`.
    """
    waves = [np.asarray(w, np.float32) for w in waves]
    if not waves or min(len(w) for w in waves) < cfg.mel_config.hop_length * 8:
        raise UserError("a reference recording is too short for speaker conditioning (need at least 0.1 s)")
    pieces = _chunks(waves, cfg)
    if not pieces:
        raise UserError(f"the references hold no piece of at least {XTTS_MIN_CHUNK_SECONDS} s for conditioning")
    norms = np.asarray(cfg.mel_norms, np.float32)[:, None] if cfg.mel_norms else None
    mels = [log_mel(p, cfg.mel_config) for p in pieces]
    return [m / norms for m in mels] if norms is not None else mels


@eqx.filter_jit
def condition_from_chunks(conditioner: Conditioner, chunks: Float[Array, "K n_mels T"]) -> Float[Array, "N C"]:
    return conditioner.from_chunks(chunks)


def condition_from_mels(conditioner: Conditioner, mels: list[np.ndarray]) -> np.ndarray:
    """Mean latents ``[num_latents, n_embd]`` over chunks of possibly different lengths: chunks of
    one length run together (one compile per length), then the means are weighted by count."""
    by_length: dict[int, list[np.ndarray]] = {}
    for m in mels:
        by_length.setdefault(m.shape[1], []).append(m)
    total = sum(len(group) * np.asarray(condition_from_chunks(conditioner, jnp.asarray(np.stack(group))), np.float64)
                for group in by_length.values())
    return (total / len(mels)).astype(np.float32)
