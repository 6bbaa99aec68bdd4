"""Reading PyTorch checkpoints: ``torch.load(weights_only=True)`` on CPU, with clear errors.

coqui TTS pickles its training config with the weights: XTTS-v2's released ``model.pth`` holds a
``TTS.tts.configs.xtts_config.XttsConfig`` object (with ``XttsArgs``, ``XttsAudioConfig``,
``BaseDatasetConfig`` inside), which torch's weights-only unpickler refuses ("Unsupported
global"), and coqui is not installed here. Such a class is let through as an inert stand-in
that only keeps its pickled fields: no code from the checkpoint runs, and only names under
coqui's packages (``TTS.``, ``coqpit.``, ``trainer.``) are stood in for; any other class is still
refused. The tensors load exactly as before.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

import numpy as np

from xtts_jax.errors import UserError
from xtts_jax.weights import check_file

STAND_IN_PACKAGES = ("TTS.", "coqpit.", "trainer.")
# What XTTS-v2 checkpoints are known to pickle besides tensors (coqui-tts registers the same
# classes with torch.serialization.add_safe_globals); others under the packages above are
# stood in for when torch names them.
KNOWN_COQUI_CLASSES = ("TTS.tts.configs.xtts_config.XttsConfig", "TTS.tts.configs.xtts_config.XttsAudioConfig",
                       "TTS.tts.models.xtts.XttsArgs", "TTS.tts.models.xtts.XttsAudioConfig",
                       "TTS.config.shared_configs.BaseDatasetConfig", "TTS.config.shared_configs.BaseAudioConfig")
_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL ([\w.]+) was not an allowed global")


class StandIn:
    """An object of a coqui class that is not installed: its pickled fields, nothing else."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.__dict__.update(kwargs)

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})

    def __repr__(self) -> str:
        return f"<stand-in {type(self).__module__}.{type(self).__qualname__}: {', '.join(sorted(self.__dict__))}>"


def stand_in(dotted: str) -> tuple[type, str]:
    """A :class:`StandIn` subclass for ``module.Class``, in the form torch's safe globals take."""
    module, name = dotted.rsplit(".", 1)
    return type(name, (StandIn,), {"__module__": module, "__qualname__": name}), dotted


def torch_load(path: str | Path, tensor_ok: bool = False) -> dict:
    """``torch.load(path, weights_only=True)`` on CPU; coqui's config objects become stand-ins.
    A state dict, or with ``tensor_ok`` also a bare tensor (XTTS-v2's ``mel_stats.pth``)."""
    try:
        import torch
    except ImportError:
        raise UserError("reading PyTorch checkpoints (tools/convert_xtts.py) needs torch, the 'convert' extra: "
                        "pip install -e '.[convert]' (a CPU build: pip install torch==2.13.0 --index-url "
                        "https://download.pytorch.org/whl/cpu)") from None
    path = check_file(path, "PyTorch checkpoint")
    allowed = {name: stand_in(name) for name in KNOWN_COQUI_CLASSES}
    while True:
        try:
            with torch.serialization.safe_globals([collections.defaultdict, *allowed.values()]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
            break
        except Exception as e:  # pickle errors, truncated files, non-tensor payloads
            missing = _UNSUPPORTED.search(str(e))
            name = missing.group(1) if missing else None
            if name and name.startswith(STAND_IN_PACKAGES) and name not in allowed:
                allowed[name] = stand_in(name)  # one more coqui class: read the file again with it
                continue
            # torch's unpickling messages run over many lines and suggest weights_only=False: keep the first
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            detail = f"it pickles {name}, which weights_only loading does not run" if name else \
                f"{type(e).__name__}: {first[:160]}"
            raise UserError(f"cannot read {str(path)!r} as a PyTorch checkpoint with torch.load(weights_only=True) "
                            f"({detail}).") from None
    if not isinstance(obj, dict) and not (tensor_ok and isinstance(obj, torch.Tensor)):
        raise UserError(f"{str(path)!r} holds a {type(obj).__name__}, not a state dict.")
    return obj


def xtts_state_dict(path_or_state) -> tuple[dict, str]:
    """The state dict of an XTTS checkpoint and words naming it for errors.

    ``path_or_state``: a path to ``model.pth``, the loaded ``{"model": state_dict, ...}``, or a
    bare state dict. Keys of coqui's ``GPTTrainer`` checkpoints lose their ``xtts.`` prefix.
    """
    if isinstance(path_or_state, dict):
        obj, where = path_or_state, "the state dict"
    else:
        obj, where = torch_load(path_or_state), repr(str(path_or_state))
    state = obj["model"] if isinstance(obj.get("model"), dict) else obj
    return {k.removeprefix("xtts."): v for k, v in state.items() if isinstance(k, str)}, where


def float32(value) -> np.ndarray:
    """A torch tensor (or array-like) as a float32 numpy array."""
    return value.detach().float().numpy() if hasattr(value, "detach") else np.asarray(value, np.float32)
