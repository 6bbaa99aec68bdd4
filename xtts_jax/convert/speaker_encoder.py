"""Import the speaker encoder of an XTTS-v2 ``model.pth`` into :class:`SpeakerEncoder`; save and load it.

Key layout under ``hifigan_decoder.speaker_encoder.`` (coqui TTS ``ResNetSpeakerEncoder``):

* ``conv1.{weight,bias}``, ``bn1.*``; ``layer{1..4}.{j}.{conv1,bn1,conv2,bn2}.*``, the SE gate's
  ``layer{s}.{j}.se.fc.{0,2}.*`` (Linears of its Sequential; 1 is the ReLU) and the shortcut's
  ``layer{s}.0.downsample.{0,1}.*`` (1x1 conv, BatchNorm);
* ``attention.{0,2,3}.*``: Conv1d, BatchNorm1d, Conv1d of the pooling Sequential (1 is its ReLU);
  ``fc.*``: the Linear to the embedding;
* BatchNorms: ``weight``, ``bias``, ``running_mean``, ``running_var`` are read;
  ``num_batches_tracked`` is a training counter and ignored;
* ``torch_spec.0.filter`` (pre-emphasis), ``torch_spec.1.spectrogram.window`` and
  ``torch_spec.1.mel_scale.fb`` are buffers of the front end, which we compute from the config;
  those present are checked against it, so a checkpoint of other audio settings is refused.

coqui's ``GPTTrainer`` checkpoints prefix every key with ``xtts.``; it is dropped. Our attribute
names are the torch ones but for the Sequential indices, renamed by ``_TORCH_NAMES``.
"""

from __future__ import annotations

import re
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from xtts_jax.convert.torch_io import float32, xtts_state_dict
from xtts_jax.errors import UserError
from xtts_jax.models.speaker_encoder import (SpeakerEncoder, SpeakerEncoderConfig, hamming_window,
                                             mel_filter_bank)
from xtts_jax.weights import export_safetensors, load_safetensors, path_name, read_model_config

PREFIX = "hifigan_decoder.speaker_encoder."
METADATA_KEY = "speaker_encoder"
_TORCH_NAMES = [  # our path name -> coqui's state dict key
    (re.compile(r"^layers\.(\d+)\."), lambda m: f"layer{int(m[1]) + 1}."),
    (re.compile(r"\.se\.fc([12])\."), lambda m: f".se.fc.{2 * int(m[1]) - 2}."),
    (re.compile(r"\.downsample_conv\."), ".downsample.0."),
    (re.compile(r"\.downsample_bn\."), ".downsample.1."),
    (re.compile(r"^attention\.conv1\."), "attention.0."),
    (re.compile(r"^attention\.bn\."), "attention.2."),
    (re.compile(r"^attention\.conv2\."), "attention.3."),
]
_FRONT_END = "torch_spec."


def torch_name(name: str) -> str:
    """Our dotted leaf name (``layers.1.0.se.fc1.weight``) -> coqui's key (``layer2.0.se.fc.0.weight``)."""
    for pattern, repl in _TORCH_NAMES:
        name = pattern.sub(repl, name)
    return name


def read_speaker_encoder_state(path_or_state_dict) -> dict[str, np.ndarray]:
    """The ``hifigan_decoder.speaker_encoder.*`` tensors, prefix removed, as numpy arrays.

    Accepts a path to ``model.pth`` (``{"model": state_dict, ...}`` or a bare state dict) or the dict.
    """
    state, where = xtts_state_dict(path_or_state_dict)
    arrays = {k[len(PREFIX):]: float32(v) for k, v in state.items()
              if k.startswith(PREFIX) and not k.endswith("num_batches_tracked")}
    if not arrays:
        raise UserError(f"{where} has no {PREFIX}* tensors; is it an XTTS-v2 model.pth?")
    return arrays


def _shape(state: dict, key: str) -> tuple:
    if key not in state:
        raise UserError(f"checkpoint lacks {PREFIX + key!r}; is it an XTTS-v2 speaker encoder?")
    return tuple(state[key].shape)


def infer_config(state: dict[str, np.ndarray]) -> SpeakerEncoderConfig:
    """The architecture that the shapes of ``state`` describe; audio settings stay XTTS-v2's."""
    layers, filters = [], []
    for stage in range(1, 5):
        n = 0
        while f"layer{stage}.{n}.conv1.weight" in state:
            n += 1
        layers.append(n)
        filters.append(_shape(state, f"layer{stage}.0.conv1.weight")[0])
    hidden, pooled = _shape(state, "attention.0.weight")[:2]
    return SpeakerEncoderConfig(layers=tuple(layers), num_filters=tuple(filters),
                                se_reduction=filters[0] // _shape(state, "layer1.0.se.fc.0.weight")[0],
                                n_mels=8 * pooled // filters[-1], attention_channels=hidden,
                                proj_dim=_shape(state, "fc.weight")[0])


def _check_front_end(state: dict[str, np.ndarray], cfg: SpeakerEncoderConfig) -> None:
    expected = {"torch_spec.0.filter": np.array([[[-cfg.preemphasis, 1.0]]], np.float32),
                "torch_spec.1.spectrogram.window": hamming_window(cfg),
                "torch_spec.1.mel_scale.fb": mel_filter_bank(cfg).T}
    for key, want in expected.items():
        got = state.get(key)
        if got is not None and (got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=1e-4)):
            raise UserError(f"{PREFIX + key!r} (shape {got.shape}) differs from the front end of the config "
                            f"(n_fft {cfg.n_fft}, win_length {cfg.win_length}, {cfg.n_mels} mels at "
                            f"{cfg.sample_rate} Hz, pre-emphasis {cfg.preemphasis}); pass the right config.")


def load_xtts_speaker_encoder(path_or_state_dict, config: SpeakerEncoderConfig | None = None) -> SpeakerEncoder:
    """An XTTS-v2 ``model.pth`` (path or state dict) -> its speaker encoder, ready for inference.

    ``config``: None to infer the architecture from the shapes (audio settings: XTTS-v2's). A
    missing key, a shape that does not fit, or an unused speaker encoder tensor raise a UserError.
    """
    state = read_speaker_encoder_state(path_or_state_dict)
    cfg = config or infer_config(state)
    _check_front_end(state, cfg)
    # shapes only: every leaf is replaced below, so no random init runs
    skeleton = eqx.filter_eval_shape(SpeakerEncoder, cfg, key=jax.random.key(0))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(skeleton)
    used, values = set(), []
    for path, leaf in leaves:
        key = torch_name(path_name(path))
        if key not in state:
            raise UserError(f"checkpoint lacks {PREFIX + key!r}; does the config match the checkpoint?")
        if state[key].shape != leaf.shape:
            raise UserError(f"{PREFIX + key!r} has shape {state[key].shape} but the config expects {leaf.shape}.")
        used.add(key)
        values.append(jnp.asarray(state[key]))
    leftover = sorted(k for k in state if k not in used and not k.startswith(_FRONT_END))
    if leftover:
        raise UserError(f"checkpoint has {len(leftover)} speaker encoder tensor(s) this config does not use, "
                        f"e.g. {PREFIX + leftover[0]!r}; does the config match the checkpoint?")
    return jax.tree_util.tree_unflatten(treedef, values)


def save_speaker_encoder(encoder: SpeakerEncoder, path: str | Path) -> None:
    """Write the encoder's arrays to a safetensors file, its config as JSON metadata ``speaker_encoder``."""
    export_safetensors(encoder, str(path), metadata={METADATA_KEY: encoder.config.to_dict()})


def load_speaker_encoder(path: str | Path) -> SpeakerEncoder:
    """A speaker encoder written by :func:`save_speaker_encoder`."""
    cfg = SpeakerEncoderConfig.from_dict(read_model_config(str(path), METADATA_KEY, "speaker encoder"))
    skeleton = eqx.filter_eval_shape(SpeakerEncoder, cfg, key=jax.random.key(0))
    return load_safetensors(skeleton, str(path), "speaker encoder checkpoint")
