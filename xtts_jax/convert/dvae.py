"""Import XTTS-v2's DVAE (``dvae.pth`` of the release, Tortoise's ``DiscreteVAE``) into :class:`DVAE`.

XTTS-v2 makes the GPT's audio tokens with it when it trains (coqui TTS ``GPTTrainer``); with it
imported, ``tools/encode_audio.py`` gives the tokens an XTTS-v2 checkpoint predicts, so
``recipes/train_tts.py --init`` can fine-tune a converted XTTS-v2 on new speech.

Key layout (``positional_dims=1``, ``use_transposed_convs=False``):

* ``encoder.{i}.0.*``: the stride-2 convs (Sequentials of conv and ReLU), ``i < num_layers``;
  ``encoder.{i}.net.{0,2,4}.*``: the resnet blocks (conv 3, ReLU, conv 3, ReLU, conv 1);
  the last ``encoder.{i}.*``: the 1x1 conv to ``codebook_dim``;
* ``decoder.0.*``: 1x1 conv from the codebook; ``decoder.{i}.net.*``: resnet blocks;
  ``decoder.{i}.0.conv.*``: nearest-upsample convs (``UpsampledConv`` in a Sequential with ReLU);
  the last ``decoder.{i}.*``: the 1x1 conv back to mel;
* ``codebook.embed`` / ``codebook.embed_avg`` ``[codebook_dim, num_tokens]`` and
  ``codebook.cluster_size`` ``[num_tokens]``: Tortoise's EMA ``Quantize`` (our :class:`Codebook`
  stores them transposed).

Its input is ``TorchMelSpectrogram`` at 22,050 Hz (n_fft 1024, hop 256, torchaudio's HTK scale
with slaney area norm, ``log(clamp(mel, 1e-5))``) divided per channel by ``mel_stats.pth``:
:data:`XTTS_DVAE_MEL` with ``MelStats(mean=0, std=mel_norms)``. Where the frame count is not a
multiple of 4 we pad with silence and torch's convs with zeros, so the last token may differ.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from xtts_jax.audio.mel import MelConfig, MelStats
from xtts_jax.convert.torch_io import float32, torch_load, xtts_state_dict
from xtts_jax.errors import UserError
from xtts_jax.models.dvae import DVAE, Codebook, DVAEConfig

XTTS_DVAE_MEL = MelConfig(sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, fmin=0.0,
                          fmax=8000.0, htk=True, norm="slaney")


def read_dvae_state(path_or_state_dict) -> dict[str, np.ndarray]:
    """The ``encoder.*``, ``decoder.*`` and ``codebook.*`` tensors of a DiscreteVAE state dict
    (a path to ``dvae.pth``, a ``{"model": ...}`` checkpoint, or the dict) as float32 arrays."""
    state, where = xtts_state_dict(path_or_state_dict)
    state = {k.removeprefix("dvae."): v for k, v in state.items()}  # GPTTrainer keeps it as xtts' dvae
    arrays = {k: float32(v) for k, v in state.items() if k.split(".")[0] in ("encoder", "decoder", "codebook")}
    if "codebook.embed" not in arrays or "encoder.0.0.weight" not in arrays:
        raise UserError(f"{where} has no DiscreteVAE tensors (encoder.0.0.weight, codebook.embed); "
                        "is it XTTS-v2's dvae.pth?")
    return arrays


def _indices(state: dict, part: str, pattern: str) -> list[int]:
    rx = re.compile(rf"^{part}\.(\d+)\.{pattern}$")
    return sorted({int(m[1]) for k in state if (m := rx.match(k))})


def infer_config(state: dict[str, np.ndarray], mel_norms: np.ndarray | None = None) -> DVAEConfig:
    """The architecture the shapes describe, with XTTS-v2's mel front end and ``mel_norms``."""
    first = state["encoder.0.0.weight"]
    hidden, n_mels, kernel = first.shape
    layers, blocks = _indices(state, "encoder", r"0\.weight"), _indices(state, "encoder", r"net\.0\.weight")
    if layers != list(range(len(layers))) or blocks != list(range(len(layers), len(layers) + len(blocks))):
        raise UserError(f"unexpected DiscreteVAE encoder layout: stride convs {layers}, resnet blocks {blocks}")
    for i in range(1, len(layers)):  # channels double at each stride conv, as Tortoise
        if state[f"encoder.{i}.0.weight"].shape[0] != hidden * 2**i:
            raise UserError(f"DiscreteVAE encoder.{i} has {state[f'encoder.{i}.0.weight'].shape[0]} channels, "
                            f"expected {hidden * 2**i}")
    codebook_dim, num_tokens = state["codebook.embed"].shape
    if n_mels != 80 and mel_norms is None:
        raise UserError(f"a DiscreteVAE of {n_mels} mels is not XTTS-v2's (80)")
    stats = None
    if mel_norms is not None:
        norms = np.asarray(mel_norms, np.float32).reshape(-1)
        if norms.size != n_mels:
            raise UserError(f"mel_stats has {norms.size} values for a DVAE of {n_mels} mels")
        stats = MelStats(tuple([0.0] * n_mels), tuple(float(x) for x in norms))
    return DVAEConfig(n_mels=n_mels, num_tokens=num_tokens, codebook_dim=codebook_dim, hidden_dim=hidden,
                      num_layers=len(layers), num_resnet_blocks=len(blocks), kernel_size=kernel,
                      mel=dataclasses.replace(XTTS_DVAE_MEL, n_mels=n_mels), mel_stats=stats)


def _conv_names(prefix: str) -> tuple[str, str]:
    return f"{prefix}.weight", f"{prefix}.bias"


def torch_keys(cfg: DVAEConfig) -> list[tuple[tuple, str]]:
    """(path of a conv in our DVAE, its key prefix in the DiscreteVAE state dict), every conv."""
    L, R = cfg.num_layers, cfg.num_resnet_blocks
    pairs = [((("encoder", i),), f"encoder.{i}.0") for i in range(L)]
    for b in range(R):
        pairs += [((("encoder", L + b), ("convs", j)), f"encoder.{L + b}.net.{2 * j}") for j in range(3)]
    pairs.append(((("encoder", L + R),), f"encoder.{L + R}"))
    pairs.append(((("decoder", 0),), "decoder.0"))
    for b in range(R):
        pairs += [((("decoder", 1 + b), ("convs", j)), f"decoder.{1 + b}.net.{2 * j}") for j in range(3)]
    pairs += [((("decoder", 1 + R + i), ("conv", None)), f"decoder.{1 + R + i}.0.conv") for i in range(L)]
    pairs.append(((("decoder", 1 + R + L),), f"decoder.{1 + R + L}"))
    return pairs


def _get(model, path: tuple):
    node = model
    for attr, index in path:
        node = getattr(node, attr)
        if index is not None:
            node = node[index]
    return node


def load_xtts_dvae(path_or_state_dict, mel_norms: np.ndarray | None = None) -> DVAE:
    """A :class:`DVAE` with the weights of a DiscreteVAE state dict; ``mel_norms``: the
    per-channel divisor of its input (``mel_stats.pth``)."""
    state = read_dvae_state(path_or_state_dict)
    cfg = infer_config(state, mel_norms)
    model = eqx.filter_eval_shape(lambda: DVAE(cfg, jax.random.key(0)))
    used = set()

    def take(key: str, shape: tuple) -> np.ndarray:
        if key not in state:
            raise UserError(f"DiscreteVAE checkpoint lacks {key!r}")
        value = state[key]
        if value.size != int(np.prod(shape)):
            raise UserError(f"DiscreteVAE {key} has shape {value.shape}, the model needs {shape}")
        used.add(key)
        return value.reshape(shape)

    for path, prefix in torch_keys(cfg):
        conv = _get(model, path)
        w, b = _conv_names(prefix)
        new = eqx.tree_at(lambda c: (c.weight, c.bias), conv,
                          (take(w, conv.weight.shape), take(b, conv.bias.shape)))
        model = eqx.tree_at(lambda m, p=path: _get(m, p), model, new)
    book = Codebook(take("codebook.embed", (cfg.codebook_dim, cfg.num_tokens)).T.copy(),
                    take("codebook.cluster_size", (cfg.num_tokens,)),
                    take("codebook.embed_avg", (cfg.codebook_dim, cfg.num_tokens)).T.copy())
    model = eqx.tree_at(lambda m: m.codebook, model, book)
    if left := sorted(set(state) - used):
        raise UserError(f"DiscreteVAE checkpoint has tensors this model does not read: {', '.join(left[:4])}")
    return jax.tree.map(lambda x: jax.numpy.asarray(x) if isinstance(x, np.ndarray) else x, model)


def read_mel_norms(path: str | Path) -> np.ndarray:
    """``mel_stats.pth``: a tensor of the 80 per-channel divisors (or a dict holding one)."""
    obj = torch_load(path, tensor_ok=True)
    if isinstance(obj, dict):
        obj = next((v for k, v in obj.items() if "mel" in str(k)), None) if len(obj) != 1 else next(iter(obj.values()))
    norms = float32(obj).reshape(-1) if obj is not None else np.zeros(0)
    if norms.size == 0 or not np.all(np.isfinite(norms)) or np.any(norms <= 0):
        raise UserError(f"{path} holds no positive finite mel norms")
    return norms
