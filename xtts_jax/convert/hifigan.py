"""Import PyTorch HiFiGAN generators into :class:`xtts_jax.models.hifigan.HifiganGenerator`.

Two sources:

* original HiFiGAN generator checkpoints (jik876/hifi-gan ``g_XXXXXXXX``): ``{"generator": state}``,
  with a ``config.json`` next to them; coqui TTS vocoders keep the state under ``"model"``;
* the ``hifigan_decoder.waveform_decoder.*`` part of an XTTS-v2 ``model.pth``.

Weight norm comes either as ``weight_g``/``weight_v`` (``torch.nn.utils.weight_norm``) or as
``parametrizations.weight.original0``/``original1`` (``torch.nn.utils.parametrizations``); both are
folded into plain weights, so the imported generator is ready for inference. Keys map by path: our
module attribute names are the torch ones.

torch is needed only here, and imported only when a checkpoint is read.
"""

from __future__ import annotations

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from xtts_jax.convert.torch_io import torch_load, xtts_state_dict
from xtts_jax.errors import UserError
from xtts_jax.models.hifigan import HifiganConfig, HifiganGenerator, fold_weight_norm, preset

XTTS_PREFIX = "hifigan_decoder.waveform_decoder."
_ORIGINAL_KEYS = ("resblock", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
                  "resblock_kernel_sizes", "resblock_dilation_sizes")


def config_from_original(d: dict, in_channels: int = 80) -> HifiganConfig:
    """Our config from the original repo's ``config_v1.json`` fields (``num_mels``, ``sampling_rate``)."""
    missing = [k for k in _ORIGINAL_KEYS if k not in d]
    if missing:
        raise UserError(f"HiFiGAN config lacks {missing}.")
    return HifiganConfig(
        in_channels=int(d.get("num_mels", in_channels)),
        sample_rate=int(d.get("sampling_rate", 22050)),
        upsample_rates=tuple(d["upsample_rates"]),
        upsample_kernel_sizes=tuple(d["upsample_kernel_sizes"]),
        upsample_initial_channel=int(d["upsample_initial_channel"]),
        resblock=str(d["resblock"]),
        resblock_kernel_sizes=tuple(d["resblock_kernel_sizes"]),
        resblock_dilation_sizes=tuple(tuple(x) for x in d["resblock_dilation_sizes"]),
    )


def _folded(state: dict[str, np.ndarray], key: str) -> np.ndarray | None:
    """The effective weight under ``key`` ('....weight'), folding either weight-norm format."""
    base = key[: -len("weight")]
    for g_key, v_key in ((key + "_g", key + "_v"),
                         (base + "parametrizations.weight.original0", base + "parametrizations.weight.original1")):
        if g_key in state and v_key in state:
            g, v = state.pop(g_key).astype(np.float64), state.pop(v_key).astype(np.float64)
            norm = np.sqrt((v * v).sum(axis=tuple(range(1, v.ndim)), keepdims=True))
            return (g * v / norm).astype(np.float32)
    return state.pop(key, None)


def _path_name(path) -> str:
    parts = []
    for p in path:
        parts.append(str(p.name) if hasattr(p, "name") else str(p.idx))
    return ".".join(parts)


def generator_from_state_dict(state: dict, config: HifiganConfig, prefix: str = "") -> HifiganGenerator:
    """Fill a weight-norm-folded generator from a torch state dict (tensors or arrays).

    Every tensor under ``prefix`` must be used and every parameter found, with matching shapes;
    otherwise a :class:`UserError` names the first offending key.
    """
    arrays = {k[len(prefix):]: np.asarray(v.float().numpy() if hasattr(v, "float") else v, np.float32)
              for k, v in state.items() if k.startswith(prefix)}
    if not arrays:
        raise UserError(f"no generator weights found under prefix {prefix!r}.")
    # shapes only: building real random weights op by op would cost seconds of eager dispatch
    skeleton = eqx.filter_eval_shape(
        lambda: fold_weight_norm(HifiganGenerator(config, key=jax.random.PRNGKey(0))))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(skeleton)
    new = []
    for path, leaf in leaves:
        name = _path_name(path)
        value = _folded(arrays, name) if name.endswith("weight") else arrays.pop(name, None)
        if value is None:
            raise UserError(f"checkpoint lacks {prefix + name!r}; does the config match the checkpoint?")
        if value.shape != leaf.shape:
            raise UserError(f"{prefix + name!r} has shape {tuple(value.shape)} but the config expects "
                            f"{tuple(leaf.shape)}.")
        new.append(jnp.asarray(value))
    if arrays:
        extra = sorted(arrays)
        raise UserError(f"checkpoint has {len(extra)} weights the config does not use, e.g. "
                        f"{prefix + extra[0]!r}; does the config match the checkpoint?")
    return jax.tree_util.tree_unflatten(treedef, new)


def load_hifigan_generator(path: str | Path, config: HifiganConfig | str | None = None) -> HifiganGenerator:
    """An original HiFiGAN (or coqui TTS) generator checkpoint -> inference-ready generator.

    ``config``: a :class:`HifiganConfig`, a preset name ("v1", "v2", "v3"), or None to read the
    ``config.json`` that the original repo keeps next to its checkpoints.
    """
    path = Path(path)
    if config is None:
        cfg_path = path.parent / "config.json"
        if not cfg_path.is_file():
            raise UserError(f"no config given and no {str(cfg_path)!r}; pass a config or preset name.")
        config = config_from_original(json.loads(cfg_path.read_text()))
    elif isinstance(config, str):
        config = preset(config)
    obj = torch_load(path)
    state = obj.get("generator", obj.get("model", obj))
    return generator_from_state_dict(state, config)


def load_xtts_hifigan_decoder(path_or_state, config: HifiganConfig | None = None) -> HifiganGenerator:
    """The HiFiGAN decoder of an XTTS-v2 ``model.pth`` (keys ``hifigan_decoder.waveform_decoder.*``;
    a path, or the loaded checkpoint / state dict; ``xtts.`` key prefixes of coqui's trainer dropped).

    The speaker encoder next to it (``hifigan_decoder.speaker_encoder.*``) is read by
    ``convert/speaker_encoder.py``.
    """
    state, _ = xtts_state_dict(path_or_state)
    if not any(k.startswith(XTTS_PREFIX) for k in state):
        raise UserError(f"the checkpoint has no XTTS HiFiGAN decoder ({XTTS_PREFIX}* keys).")
    return generator_from_state_dict(state, config or preset("xtts-v2"), prefix=XTTS_PREFIX)


def load_torch_generator(path: str | Path, config: HifiganConfig | str | None = None) -> HifiganGenerator:
    """Either kind of PyTorch checkpoint: an XTTS-v2 ``model.pth`` is told apart by its key names."""
    obj = torch_load(path)
    state = obj.get("model", obj)
    if any(isinstance(k, str) and k.startswith(XTTS_PREFIX) for k in state):
        cfg = preset(config) if isinstance(config, str) else config
        return generator_from_state_dict(state, cfg or preset("xtts-v2"), prefix=XTTS_PREFIX)
    return load_hifigan_generator(path, config)
