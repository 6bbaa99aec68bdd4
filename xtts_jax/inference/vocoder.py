"""The decode interface: features (+ speaker embedding) -> waveform. The TTS tool calls only this.

Two backends:

* ``griffinlim``: log-mel ``[n_mels, frames]`` -> audio by Griffin-Lim (``xtts_jax.audio.mel``);
  no weights, the baseline every mel can be heard with.
* ``hifigan``: a HiFiGAN generator -- ours (``generator.safetensors`` from
  ``recipes/train_hifigan.py``), an original HiFiGAN checkpoint, or the decoder of an XTTS-v2
  ``model.pth``, which reads GPT latents ``[frames, 1024]`` and a 512-d speaker embedding.

Mel features must be computed as the decoder was trained: our recipes use
:func:`xtts_jax.audio.mel.log_mel` (natural-log power mel); original HiFiGAN checkpoints expect
their own log-magnitude mel. Bad input (wrong channel count, NaN/inf, a speaker embedding of the
wrong size, a sample rate the decoder does not render at) raises one clear :class:`UserError`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from xtts_jax.audio.mel import MelConfig, griffin_lim
from xtts_jax.errors import UserError
from xtts_jax.models.hifigan import HifiganConfig, HifiganGenerator, fold_weight_norm

BACKENDS = ("griffinlim", "hifigan")


@eqx.filter_jit
def _generate(generator: HifiganGenerator, features, speaker):
    # one compile per input length; the weights are arguments, so a new checkpoint reuses it
    return generator(features, speaker)


@dataclasses.dataclass(frozen=True)
class Vocoder:
    """One decoder. ``features``: ``"mel"`` (``[n_mels, frames]``) or ``"gpt_latents"`` (``[frames, d]``)."""

    backend: str
    sample_rate: int
    features: str
    channels: int  # n_mels, or the latent width
    speaker_dim: int = 0  # 0: takes no speaker embedding
    generator: HifiganGenerator | None = None
    mel: MelConfig | None = None
    n_iter: int = 32

    @classmethod
    def griffin_lim(cls, mel: MelConfig = MelConfig(), n_iter: int = 32) -> "Vocoder":
        return cls("griffinlim", mel.sample_rate, "mel", mel.n_mels, mel=mel, n_iter=n_iter)

    @classmethod
    def hifigan(cls, generator: HifiganGenerator) -> "Vocoder":
        cfg = generator.config
        kind = "gpt_latents" if cfg.input_interpolation else "mel"
        return cls("hifigan", cfg.sample_rate, kind, cfg.in_channels, cfg.cond_channels,
                   generator=fold_weight_norm(generator))

    def decode(self, features: np.ndarray, speaker_embedding: np.ndarray | None = None,
               sample_rate: int | None = None) -> np.ndarray:
        """Waveform ``[samples]`` float32 at ``self.sample_rate`` from ``features``.

        ``sample_rate``: the rate the caller wants; a mismatch with the decoder is an error (no
        silent resampling). ``speaker_embedding``: ``[speaker_dim]`` (``[1, d, 1]`` and ``[d, 1]``
        as XTTS-v2 stores it are accepted), required by and only by conditioned decoders.
        """
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise UserError(f"the {self.backend} decoder renders at {self.sample_rate} Hz, "
                            f"but {sample_rate} Hz was requested.")
        x = np.asarray(features, np.float32)
        if self.features == "mel":
            if x.ndim != 2 or x.shape[0] != self.channels:
                raise UserError(f"expected a log-mel of shape [{self.channels} mels, frames], got {x.shape}.")
        elif x.ndim != 2 or x.shape[1] != self.channels:
            raise UserError(f"expected GPT latents of shape [frames, {self.channels}], got {x.shape}.")
        if x.size == 0:
            raise UserError("cannot decode zero frames.")
        if not np.all(np.isfinite(x)):
            raise UserError(f"features hold {int(np.sum(~np.isfinite(x)))} NaN or infinite values.")
        g = self._speaker(speaker_embedding)
        if self.backend == "griffinlim":
            return griffin_lim(x, self.mel, n_iter=self.n_iter)
        if self.features == "gpt_latents":
            x = x.T  # the generator reads [channels, time]
        return np.asarray(_generate(self.generator, jax.numpy.asarray(x), g), np.float32)

    def _speaker(self, e: np.ndarray | None):
        if e is None:
            if self.speaker_dim:
                raise UserError(f"this decoder needs a {self.speaker_dim}-d speaker embedding.")
            return None
        if not self.speaker_dim:
            raise UserError(f"the {self.backend} decoder takes no speaker embedding.")
        e = np.asarray(e, np.float32)
        if e.size != self.speaker_dim or sum(d != 1 for d in e.shape) > 1:
            raise UserError(f"speaker embedding must have {self.speaker_dim} values, got shape {e.shape}.")
        if not np.all(np.isfinite(e)):
            raise UserError("the speaker embedding holds NaN or infinite values.")
        return jax.numpy.asarray(e.reshape(-1))


def load_generator_safetensors(path: str | Path) -> tuple[HifiganGenerator, MelConfig | None]:
    """A generator exported by ``recipes/train_hifigan.py`` (its config in the file's metadata)."""
    from xtts_jax.weights import load_safetensors, read_safetensors_metadata

    path = str(path)
    if not Path(path).is_file():
        raise UserError(f"weights file {path} does not exist.")
    meta = read_safetensors_metadata(path)
    if "hifigan" not in meta:
        raise UserError(f"{path} carries no HiFiGAN config in its metadata.")
    cfg = HifiganConfig.from_dict(json.loads(meta["hifigan"]))
    mel = MelConfig(**json.loads(meta["mel"])) if "mel" in meta else None
    # zero-filled skeleton of the right shapes; random init op by op would take seconds
    shapes = eqx.filter_eval_shape(lambda: fold_weight_norm(HifiganGenerator(cfg, key=jax.random.PRNGKey(0))))
    skeleton = jax.tree_util.tree_map(
        lambda s: np.zeros(s.shape, s.dtype) if isinstance(s, jax.ShapeDtypeStruct) else s, shapes)
    return load_safetensors(skeleton, path), mel


def load_vocoder(source: str | Path = "griffinlim", config: HifiganConfig | str | None = None,
                 mel: MelConfig = MelConfig()) -> Vocoder:
    """``"griffinlim"``, a ``.safetensors`` generator of ours, or a PyTorch checkpoint (original
    HiFiGAN with ``config`` or a ``config.json`` beside it; XTTS-v2 ``model.pth``)."""
    if str(source).lower() in ("griffinlim", "griffin-lim", "griffin_lim"):
        return Vocoder.griffin_lim(mel)
    path = Path(source)
    if not path.is_file():
        raise UserError(f"vocoder {str(source)!r} is neither a backend ({', '.join(BACKENDS)}) nor a file.")
    if path.suffix == ".safetensors":
        generator, trained_mel = load_generator_safetensors(path)
        if trained_mel is not None and trained_mel.n_mels != generator.config.in_channels:
            raise UserError(f"{path} was trained on {trained_mel.n_mels} mels but reads "
                            f"{generator.config.in_channels} channels.")
        return Vocoder.hifigan(generator)
    from xtts_jax.convert.hifigan import load_torch_generator

    return Vocoder.hifigan(load_torch_generator(path, config))
