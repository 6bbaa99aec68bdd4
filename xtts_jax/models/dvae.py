"""The discrete VAE that turns log-mel into audio tokens, as XTTS-v2 (after Tortoise's DiscreteVAE).

mel ``[n_mels, T]`` -> conv encoder (2 stride-2 convs: T/4, one token per 1,024 samples) -> resnet
blocks -> 1x1 conv to ``codebook_dim`` -> nearest of ``num_tokens`` codes -> 1x1 conv -> resnet
blocks -> 2 x (nearest-neighbour upsample + conv) -> 1x1 conv back to mel. XTTS-v2 uses
num_tokens 1024, codebook_dim 512, hidden_dim 512, 3 resnet blocks, kernel 3, no normalisation.

The codebook is learned by exponential moving averages (VQ-VAE, van den Oord et al. 2017, App. A.1),
not by gradients: the model carries it as a :class:`Codebook` whose arrays the forward pass reads
through ``stop_gradient``; after each optimiser step the trainer calls the pure functions
:func:`ema_update` and :func:`restart_dead_codes` (state in, state out) and puts the result back
with ``eqx.tree_at`` (:func:`update_codebook` does all three).

A speaker-conditioned decoder (``decoder_speaker``, as XTTS-v2's HiFiGAN takes a speaker
embedding beside the GPT latents) also reads :func:`reference_features` of a reference recording:
each stage of the decoder is scaled and shifted by a zero-initialised map of those features (FiLM),
so a DVAE trained without it starts from the same output, and the features put back the timbre the
1,024 codes lose for a voice they were not trained on. No features (``speaker=None``) is the
unconditioned decoder (trained so by feature dropout). Such a decoder keeps the mean features of
each voice it was trained on (``reference_voices``), so that rendering can push an unheard voice's
features further from the nearest of them (:func:`steer_reference`, ``reference_strength``).

A shipped model needs only decoding (codes -> mel): :func:`save_dvae` with ``decoder_only`` writes
the decoder and the codebook vectors, and the DVAE loaded from such a file refuses to encode.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from xtts_jax.audio.mel import LOG_CLAMP, MelConfig, MelStats, log_mel
from xtts_jax.errors import UserError


def check_strength(strength: float, cfg: DVAEConfig) -> float:
    """``strength`` if ``cfg`` can steer references by it (:func:`steer_reference`), else a UserError."""
    if not (isinstance(strength, (int, float)) and np.isfinite(strength) and strength > 0):
        raise UserError(f"the reference strength must be a positive number, got {strength!r}")
    if strength != 1.0 and not cfg.decoder_speaker:
        raise UserError("this DVAE's decoder reads no reference recording, so no reference strength applies to it")
    if strength != 1.0 and not cfg.reference_voices:
        raise UserError("this DVAE holds no reference features of its training voices (written by recipes/train_dvae.py "
                        "--decoder-speaker), so it renders at reference strength 1 only")
    return float(strength)


@dataclasses.dataclass(frozen=True)
class DVAEConfig:
    n_mels: int = 80
    num_tokens: int = 1024
    codebook_dim: int = 512
    hidden_dim: int = 512
    num_layers: int = 2  # stride-2 convs: time shrinks by 2**num_layers
    num_resnet_blocks: int = 3
    kernel_size: int = 3
    ema_decay: float = 0.99  # as Tortoise's Quantize
    eps: float = 1e-5
    commitment_weight: float = 0.25  # VQ-VAE paper beta
    dead_code_threshold: float = 0.03  # EMA count below which a code is restarted from the data
    recon_loss: str = "mse"  # Tortoise DiscreteVAE default (MSE); "l1" also allowed
    mel: MelConfig = MelConfig()
    mel_stats: MelStats | None = None  # per-channel normalisation the model was trained with
    decoder_speaker: bool = False  # the decoder also reads reference_features (2 * n_mels values)
    speaker_hidden: int = 32  # width of the map from those features to the decoder's scales and shifts
    # Rendering may push a reference's features away from the nearest of the decoder's training voices
    # (steer_reference): how many voices' mean features the model holds (DVAE.reference_voices, written by
    # train_dvae.py; 0: none) and how far, 1 as read (pack_model.py --reference-strength).
    reference_voices: int = 0
    reference_strength: float = 1.0

    def __post_init__(self):
        if self.kernel_size % 2 != 1:
            raise UserError(f"DVAE kernel_size {self.kernel_size} must be odd.")
        if self.recon_loss not in ("mse", "l1"):
            raise UserError(f"DVAE recon_loss {self.recon_loss!r} must be 'mse' or 'l1'.")
        if self.mel.n_mels != self.n_mels:
            raise UserError(f"DVAE n_mels {self.n_mels} differs from its mel config's {self.mel.n_mels}.")
        if self.reference_voices and not self.decoder_speaker:
            raise UserError("DVAE reference_voices are for a decoder that reads reference features (decoder_speaker)")
        check_strength(self.reference_strength, self)

    @property
    def downsample(self) -> int:
        return 2**self.num_layers

    @property
    def speaker_dim(self) -> int:
        """Length of the reference features the decoder reads (0: it reads none)."""
        return 2 * self.n_mels if self.decoder_speaker else 0

    def n_tokens(self, n_samples: int) -> int:
        """Tokens for a waveform of ``n_samples``: its mel frames / downsample, rounded up."""
        return -(-self.mel.n_frames(n_samples) // self.downsample)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mel_stats"] = self.mel_stats.to_dict() if self.mel_stats else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DVAEConfig":
        d = dict(d)
        d["mel"] = MelConfig(**d.get("mel", {}))
        d["mel_stats"] = MelStats.from_dict(d["mel_stats"]) if d.get("mel_stats") else None
        return cls(**d)


PRESETS = {
    "xtts-v2": DVAEConfig(),
    "small": DVAEConfig(num_tokens=1024, codebook_dim=256, hidden_dim=256, num_resnet_blocks=2),
    "cpu": DVAEConfig(num_tokens=1024, codebook_dim=64, hidden_dim=64, num_resnet_blocks=2),  # CPU demos
    "tiny": DVAEConfig(num_tokens=32, codebook_dim=16, hidden_dim=16, num_resnet_blocks=1),
}


class Codebook(eqx.Module):
    """EMA codebook state: ``embed = embed_sum / smoothed(cluster_size)``."""

    embed: Float[Array, "num_tokens codebook_dim"]
    cluster_size: Float[Array, " num_tokens"]  # EMA of how many vectors each code received
    embed_sum: Float[Array, "num_tokens codebook_dim"]  # EMA of the sum of those vectors

    @staticmethod
    def init(cfg: DVAEConfig, key: PRNGKeyArray) -> "Codebook":
        """Every code starts with count 0, i.e. dead: the first :func:`update_codebook` moves them
        all onto encoder outputs (a data-dependent start; random codes far from the encoder's
        outputs would leave all but one unused)."""
        embed = jax.random.normal(key, (cfg.num_tokens, cfg.codebook_dim))
        return Codebook(embed, jnp.zeros(cfg.num_tokens), jnp.zeros_like(embed))


class ResBlock(eqx.Module):
    convs: tuple[eqx.nn.Conv1d, eqx.nn.Conv1d, eqx.nn.Conv1d]

    def __init__(self, channels: int, kernel_size: int, key: PRNGKeyArray):
        k1, k2, k3 = jax.random.split(key, 3)
        pad = kernel_size // 2
        self.convs = (eqx.nn.Conv1d(channels, channels, kernel_size, padding=pad, key=k1),
                      eqx.nn.Conv1d(channels, channels, kernel_size, padding=pad, key=k2),
                      eqx.nn.Conv1d(channels, channels, 1, key=k3))

    def __call__(self, x: Float[Array, "c t"]) -> Float[Array, "c t"]:
        h = jax.nn.relu(self.convs[0](x))
        h = jax.nn.relu(self.convs[1](h))
        return x + self.convs[2](h)


class Upsample(eqx.Module):
    """Nearest-neighbour 2x then a conv, as Tortoise's UpsampledConv (no transposed-conv checkerboard)."""

    conv: eqx.nn.Conv1d

    def __init__(self, c_in: int, c_out: int, kernel_size: int, key: PRNGKeyArray):
        self.conv = eqx.nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, key=key)

    def __call__(self, x: Float[Array, "c t"]) -> Float[Array, "c2 t2"]:
        return self.conv(jnp.repeat(x, 2, axis=-1))


class SpeakerFiLM(eqx.Module):
    """Reference features -> a scale and shift for each decoder stage, and an offset of the output
    mel. The last layer starts at zero: the decoder's output is unchanged until training moves it."""

    hidden: eqx.nn.Linear
    out: eqx.nn.Linear
    sizes: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, features: int, sizes: tuple[int, ...], key: PRNGKeyArray, width: int):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(features, width, key=k1)
        out = eqx.nn.Linear(width, sum(sizes), key=k2)
        self.out = eqx.tree_at(lambda m: (m.weight, m.bias), out, (jnp.zeros_like(out.weight), jnp.zeros_like(out.bias)))
        self.sizes = sizes

    def __call__(self, features: Float[Array, " f"]) -> list[Float[Array, " s"]]:
        flat = self.out(jax.nn.gelu(self.hidden(features)))
        return jnp.split(flat, np.cumsum(self.sizes)[:-1])


DECODER_ONLY = ("this DVAE holds only the DVAE decoder (a packed model); encoding audio needs the full DVAE "
                "from recipes/train_dvae.py")


class DVAE(eqx.Module):
    encoder: tuple
    decoder: tuple
    codebook: Codebook
    speaker_film: SpeakerFiLM | None
    reference_voices: Float[Array, "voices f"] | None  # mean reference features of each training voice (steer_reference)
    cfg: DVAEConfig = eqx.field(static=True)
    decoder_only: bool = eqx.field(static=True)  # loaded without its encoder: encoding is refused

    def __init__(self, cfg: DVAEConfig, key: PRNGKeyArray, decoder_only: bool = False):
        keys = iter(jax.random.split(key, 4 * cfg.num_layers + 2 * cfg.num_resnet_blocks + 8))
        k, pad = cfg.kernel_size, cfg.kernel_size // 2
        enc_chans = [cfg.n_mels] + [cfg.hidden_dim * 2**i for i in range(cfg.num_layers)]
        # decoder widths mirror the encoder's, as Tortoise: [1024, 1024, 512] for XTTS-v2
        dec_chans = [enc_chans[-1]] + enc_chans[1:][::-1]
        enc = [eqx.nn.Conv1d(a, b, k, stride=2, padding=pad, key=next(keys)) for a, b in zip(enc_chans, enc_chans[1:])]
        enc += [ResBlock(enc_chans[-1], k, next(keys)) for _ in range(cfg.num_resnet_blocks)]
        enc += [eqx.nn.Conv1d(enc_chans[-1], cfg.codebook_dim, 1, key=next(keys))]
        dec = [eqx.nn.Conv1d(cfg.codebook_dim, dec_chans[0], 1, key=next(keys))]
        dec += [ResBlock(dec_chans[0], k, next(keys)) for _ in range(cfg.num_resnet_blocks)]
        dec += [Upsample(a, b, k, next(keys)) for a, b in zip(dec_chans, dec_chans[1:])]
        dec += [eqx.nn.Conv1d(dec_chans[-1], cfg.n_mels, 1, key=next(keys))]
        self.encoder, self.decoder = tuple(enc), tuple(dec)
        self.codebook = Codebook.init(cfg, next(keys))
        # FiLM after the input conv and each upsampling (scale and shift), an offset of the output
        sizes = tuple(2 * c for c in dec_chans) + (cfg.n_mels,)
        self.speaker_film = (SpeakerFiLM(cfg.speaker_dim, sizes, next(keys), cfg.speaker_hidden)
                             if cfg.decoder_speaker else None)
        self.reference_voices = jnp.zeros((cfg.reference_voices, cfg.speaker_dim)) if cfg.reference_voices else None
        self.cfg = cfg
        self.decoder_only = decoder_only

    def encode_latents(self, mel: Float[Array, "n_mels frames"]) -> Float[Array, "tokens codebook_dim"]:
        """Continuous encoder output, one vector per token (frames must be a multiple of ``downsample``)."""
        if self.decoder_only:  # every encoding path (encode, __call__, dvae_loss) passes here
            raise UserError(DECODER_ONLY)
        h = mel
        for layer in self.encoder[: self.cfg.num_layers]:
            h = jax.nn.relu(layer(h))
        for layer in self.encoder[self.cfg.num_layers :]:
            h = layer(h)
        return h.T

    def encode(self, mel: Float[Array, "n_mels frames"]) -> Int[Array, " tokens"]:
        """Audio tokens of one (normalised) log-mel."""
        return nearest_code(jax.lax.stop_gradient(self.codebook.embed), self.encode_latents(mel))

    def decode(self, codes: Int[Array, " tokens"], speaker: Float[Array, " f"] | None = None
               ) -> Float[Array, "n_mels frames"]:
        return self.decode_latents(jax.lax.stop_gradient(self.codebook.embed)[codes], speaker)

    def decode_latents(self, q: Float[Array, "tokens codebook_dim"], speaker: Float[Array, " f"] | None = None
                       ) -> Float[Array, "n_mels frames"]:
        """Mel from code vectors; ``speaker`` (:func:`reference_features`) only for a
        speaker-conditioned decoder, where None (all zeros) is the unconditioned decoder."""
        if self.speaker_film is None:
            if speaker is not None:
                raise UserError("this DVAE decoder takes no speaker features")
            film = None
        else:
            film = iter(self.speaker_film(jnp.zeros(self.cfg.speaker_dim) if speaker is None else speaker))

        def modulate(h):
            if film is None:
                return h
            scale, shift = jnp.split(next(film), 2)
            return h * (1 + scale[:, None]) + shift[:, None]

        h = q.T
        n_res = self.cfg.num_resnet_blocks
        h = modulate(self.decoder[0](h))
        for layer in self.decoder[1 : 1 + n_res]:
            h = layer(h)
        for layer in self.decoder[1 + n_res : -1]:
            h = modulate(jax.nn.relu(layer(h)))
        out = self.decoder[-1](h)
        return out if film is None else out + next(film)[:, None]

    def __call__(self, mel: Float[Array, "n_mels frames"]):
        """``(reconstruction [n_mels, frames], codes [tokens], z_e [tokens, dim], q [tokens, dim])``.

        The decoder sees ``z_e + sg(q - z_e)``: the straight-through estimator of VQ-VAE.
        """
        z = self.encode_latents(mel)
        embed = jax.lax.stop_gradient(self.codebook.embed)
        codes = nearest_code(embed, z)
        q = embed[codes]
        return self.decode_latents(z + jax.lax.stop_gradient(q - z)), codes, z, q


def nearest_code(embed: Float[Array, "k d"], z: Float[Array, "n d"]) -> Int[Array, " n"]:
    dist = jnp.sum(z * z, -1, keepdims=True) - 2 * z @ embed.T + jnp.sum(embed * embed, -1)
    return jnp.argmin(dist, axis=-1).astype(jnp.int32)


def ema_update(
    book: Codebook, z: Float[Array, "n d"], codes: Int[Array, " n"], mask: Bool[Array, " n"], cfg: DVAEConfig
) -> Codebook:
    """One EMA step of the codebook from the encoder outputs ``z`` assigned to ``codes``.

    Laplace smoothing of the counts keeps unused codes from dividing by zero (as Tortoise's Quantize).
    """
    onehot = jax.nn.one_hot(codes, cfg.num_tokens) * mask[:, None]
    decay = cfg.ema_decay
    cluster_size = decay * book.cluster_size + (1 - decay) * onehot.sum(0)
    embed_sum = decay * book.embed_sum + (1 - decay) * onehot.T @ z
    n = cluster_size.sum()
    smoothed = (cluster_size + cfg.eps) / (n + cfg.num_tokens * cfg.eps) * n
    return Codebook(embed_sum / smoothed[:, None], cluster_size, embed_sum)


def restart_dead_codes(
    book: Codebook, z: Float[Array, "n d"], mask: Bool[Array, " n"], key: PRNGKeyArray, threshold: float
) -> tuple[Codebook, Int[Array, ""]]:
    """Move every code whose EMA count fell below ``threshold`` onto a random valid vector of ``z``.

    A restarted code gets count 1 and sum = that vector, so the next EMA step treats it as having
    just been used once. Returns the new book and how many codes were restarted.
    """
    mask = mask.astype(jnp.float32)
    dead = book.cluster_size < threshold
    picks = jax.random.choice(key, z.shape[0], (book.embed.shape[0],), p=mask / jnp.maximum(mask.sum(), 1.0))
    fresh = z[picks]
    embed = jnp.where(dead[:, None], fresh, book.embed)
    embed_sum = jnp.where(dead[:, None], fresh, book.embed_sum)
    cluster_size = jnp.where(dead, 1.0, book.cluster_size)
    return Codebook(embed, cluster_size, embed_sum), dead.sum()


def codebook_stats(codes: Int[Array, "..."], mask: Bool[Array, "..."], num_tokens: int) -> dict:
    """Perplexity ``exp(H(p))`` of the code histogram and the fraction of codes used at least once."""
    counts = jnp.zeros(num_tokens).at[codes.reshape(-1)].add(mask.reshape(-1).astype(jnp.float32))
    p = counts / jnp.maximum(counts.sum(), 1)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return {"perplexity": jnp.exp(entropy), "usage": jnp.mean(counts > 0)}


def dvae_loss(
    model: DVAE, mels: Float[Array, "batch n_mels frames"], frame_mask: Bool[Array, "batch frames"]
) -> tuple[Float[Array, ""], dict]:
    """Masked reconstruction + commitment loss over a padded batch; aux feeds :func:`update_codebook`."""
    cfg = model.cfg
    recon, codes, z, q = jax.vmap(model)(mels)
    fmask = frame_mask[:, None, :].astype(jnp.float32)
    err = recon - mels
    per = jnp.abs(err) if cfg.recon_loss == "l1" else err * err
    recon_loss = jnp.sum(per * fmask) / jnp.maximum(fmask.sum() * cfg.n_mels, 1)
    token_mask = frame_mask[:, :: cfg.downsample]
    tmask = token_mask[..., None].astype(jnp.float32)
    commit = jnp.sum(((z - q) ** 2) * tmask) / jnp.maximum(tmask.sum() * cfg.codebook_dim, 1)
    # reported in log-mel units (nats), whatever normalisation the model sees, so runs compare
    scale = 1.0 if cfg.mel_stats is None else jnp.asarray(cfg.mel_stats.arrays()[1])
    mel_l1 = jnp.sum(jnp.abs(err) * scale * fmask) / jnp.maximum(fmask.sum() * cfg.n_mels, 1)
    aux = {"recon": recon_loss, "commit": commit, "mel_l1": mel_l1, "codes": codes,
           "z": jax.lax.stop_gradient(z), "token_mask": token_mask}
    return recon_loss + cfg.commitment_weight * commit, aux


def update_codebook(model: DVAE, aux: dict, key: PRNGKeyArray) -> tuple[DVAE, dict]:
    """EMA step and dead-code restart from a :func:`dvae_loss` aux; pure, for inside a jitted step."""
    cfg = model.cfg
    z = aux["z"].reshape(-1, cfg.codebook_dim)
    codes, mask = aux["codes"].reshape(-1), aux["token_mask"].reshape(-1)
    book = ema_update(model.codebook, z, codes, mask, cfg)
    book, restarted = restart_dead_codes(book, z, mask, key, cfg.dead_code_threshold)
    stats = codebook_stats(codes, mask, cfg.num_tokens)
    return eqx.tree_at(lambda m: m.codebook, model, book), {**stats, "restarted": restarted}


def dvae_mel(wave: np.ndarray, cfg: DVAEConfig, bucket_tokens: int = 1) -> np.ndarray:
    """The model's input for a waveform: normalised log-mel ``[n_mels, frames]``, frames padded
    with silence to a multiple of ``downsample`` (so every 1,024 samples give one token).

    ``bucket_tokens > 1`` first pads the waveform with silence to a whole number of such buckets,
    so a corpus of varied lengths compiles the model for a handful of shapes only; the first
    ``cfg.n_tokens(len(wave))`` tokens are the utterance's.
    """
    if bucket_tokens > 1:
        wave = np.pad(wave, (0, (-len(wave)) % (bucket_tokens * cfg.mel.hop_length * cfg.downsample)))
    mel = log_mel(wave, cfg.mel, cfg.mel_stats)
    floor = np.log(LOG_CLAMP)
    if cfg.mel_stats is not None:
        mean, std = cfg.mel_stats.arrays()
        floor = (floor - mean) / std
    extra = (-mel.shape[1]) % cfg.downsample
    pad = np.broadcast_to(np.asarray(floor, np.float32).reshape(-1, 1), (cfg.n_mels, extra))
    return np.concatenate([mel, pad], axis=1)


def reference_features(mels: list[np.ndarray], cfg: DVAEConfig, speech_quantile: float = 0.3) -> np.ndarray:
    """What a speaker-conditioned decoder reads of its reference recordings: the mean and the
    standard deviation of each (normalised) mel channel over their speech frames (frames louder
    than the ``speech_quantile`` of each recording), ``[2 * n_mels]``; several references are pooled."""
    frames = []
    for m in mels:
        m = np.asarray(m, np.float32)
        if m.ndim != 2 or m.shape[0] != cfg.n_mels or m.shape[1] == 0:
            raise UserError(f"a reference mel must be [{cfg.n_mels}, frames], got {m.shape}")
        energy = m.mean(0)
        frames.append(m[:, energy >= np.quantile(energy, speech_quantile)])
    joined = np.concatenate(frames, axis=1)
    return np.concatenate([joined.mean(1), joined.std(1)]).astype(np.float32)


def voice_means(features: np.ndarray, speakers: list[str]) -> np.ndarray:
    """The mean of each voice's clip ``features`` (``[clips, 2 * n_mels]``), voices in sorted order:
    ``[voices, 2 * n_mels]``, what :func:`with_reference_voices` stores."""
    features = np.asarray(features, np.float32)
    if len(features) == 0 or len(features) != len(speakers):
        raise UserError(f"{len(features)} clips' features for {len(speakers)} speaker names")
    names = sorted(set(speakers))
    return np.stack([features[[i for i, s in enumerate(speakers) if s == n]].mean(0) for n in names])


def with_reference_voices(model: DVAE, voices: np.ndarray) -> DVAE:
    """``model`` holding ``voices`` (:func:`voice_means` of its decoder's training data) for :func:`steer_reference`."""
    voices = np.asarray(voices, np.float32)
    if not model.cfg.decoder_speaker or voices.ndim != 2 or voices.shape[1] != model.cfg.speaker_dim or not len(voices):
        raise UserError(f"reference voices {voices.shape} for a DVAE whose decoder reads {model.cfg.speaker_dim} features")
    cfg = dataclasses.replace(model.cfg, reference_voices=len(voices))
    like = eqx.filter_eval_shape(lambda: DVAE(cfg, jax.random.key(0), model.decoder_only))
    parts = lambda m: (m.encoder, m.decoder, m.codebook, m.speaker_film, m.reference_voices)  # noqa: E731
    return eqx.tree_at(parts, like, (*parts(model)[:4], jnp.asarray(voices)), is_leaf=lambda x: x is None)


def steer_reference(features: np.ndarray, dvae: DVAE, strength: float | None = None) -> np.ndarray:
    """``features`` pushed ``strength`` times as far from the nearest of the decoder's training voices
    as they are (``nearest + strength * (features - nearest)``; None: the config's
    ``reference_strength``). The decoder moves an unheard voice only part of the way from the training
    voice it lies nearest, so a strength above 1 extrapolates along that direction; a training voice's
    own features stay where they are."""
    strength = check_strength(dvae.cfg.reference_strength if strength is None else strength, dvae.cfg)
    features = np.asarray(features, np.float32)
    if strength == 1.0:
        return features
    voices = np.asarray(dvae.reference_voices, np.float32)
    nearest = voices[np.argmin(((voices - features) ** 2).sum(1))]
    return (nearest + strength * (features - nearest)).astype(np.float32)


def decoder_part(model: DVAE) -> DVAE:
    """What decoding codes needs: the decoder and the codebook vectors; the encoder and the EMA
    statistics (training state) become None."""
    return eqx.tree_at(lambda m: (m.encoder, m.codebook.cluster_size, m.codebook.embed_sum), model, (None,) * 3)


def save_dvae(model: DVAE, path: str, decoder_only: bool = False, dtype: str | None = None,
              reference_strength: float | None = None) -> None:
    """Weights as safetensors with the config (mel settings and statistics included) as metadata.
    ``decoder_only`` (always, for a model loaded so) keeps :func:`decoder_part`, marked by metadata
    ``decoder_only``; ``dtype`` ("float16", "bfloat16") stores the floats in 16 bits.
    ``reference_strength``: the rendering strength to store instead of the model's (the weights are the same)."""
    from xtts_jax.weights import export_safetensors

    cfg = model.cfg
    if reference_strength is not None:
        cfg = dataclasses.replace(cfg, reference_strength=check_strength(reference_strength, cfg))
    meta = {"dvae": cfg.to_dict()}
    if decoder_only or model.decoder_only:
        model, meta = decoder_part(model), {**meta, "decoder_only": True}
    export_safetensors(model, path, meta, dtype)


def load_dvae(path: str) -> DVAE:
    """A DVAE saved by :func:`save_dvae` or exported by ``recipes/train_dvae.py``. From a
    decoder-only file the encoder and EMA statistics are zeros and encoding raises a UserError."""
    from xtts_jax.weights import load_safetensors, read_model_config, read_safetensors_metadata

    cfg = DVAEConfig.from_dict(read_model_config(path, "dvae", "DVAE"))
    decoder_only = read_safetensors_metadata(path).get("decoder_only") == "true"
    like = eqx.filter_eval_shape(lambda: DVAE(cfg, jax.random.key(0), decoder_only))
    if not decoder_only:
        return load_safetensors(like, path, "DVAE checkpoint")
    part = load_safetensors(decoder_part(like), path, "DVAE checkpoint")
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), like)
    return eqx.tree_at(lambda m: (m.decoder, m.codebook.embed, m.speaker_film, m.reference_voices), zeros,
                       (part.decoder, part.codebook.embed, part.speaker_film, part.reference_voices),
                       is_leaf=lambda x: x is None)


def pad_frames(mel: Float[Array, "n_mels frames"], multiple: int, value: float) -> Float[Array, "n_mels padded"]:
    """Pad time up to a multiple of the downsampling (with the log floor, i.e. silence)."""
    extra = (-mel.shape[-1]) % multiple
    return jnp.pad(mel, ((0, 0), (0, extra)), constant_values=value)
