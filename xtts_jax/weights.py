"""Weights files in and out: safetensors with the config as JSON metadata, and clear refusals.

Every loader of our weights reads through here (models, converters, the trainer's export, the
tools), so a path that is missing or a folder, a file that is empty, truncated or of another
format, and a file that lacks the tensors or the config a model needs are each one sentence
naming the path (:class:`~xtts_jax.errors.UserError`), never a traceback from the reader. Arrays
are keyed by the dotted path name of their pytree leaf (``transformer.blocks.ln_1.weight``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from xtts_jax.errors import UserError


def path_name(path) -> str:
    """Dotted name of a pytree path: ``opt_state.1.0.mu.transformer.blocks.ln_1.weight``."""
    return ".".join(str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path)


def flatten(tree: Any) -> dict[str, Any]:
    """Array leaves of ``tree`` keyed by dotted path name (None and static leaves skipped)."""
    return {path_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def unflatten(like: Any, flat: dict[str, Any]) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
    return jax.tree_util.tree_unflatten(treedef, [flat[path_name(p)] for p, _ in leaves])


def check_file(path: str | Path, what: str) -> Path:
    """``path`` if it names a file; else a UserError saying it is missing or a folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    return path


def _open(path: str | Path, what: str):
    """An open safetensors reader of ``path``, or a UserError saying why the file cannot be one."""
    from safetensors import SafetensorError, safe_open

    path = check_file(path, what)
    try:
        return safe_open(str(path), framework="numpy")
    except OSError as e:
        raise UserError(f"{what} {path} cannot be read ({e.strerror or e})") from None
    except SafetensorError:
        why = "it is empty" if path.stat().st_size == 0 else "damaged, truncated or another format"
        raise UserError(f"{what} {path} is not a safetensors file ({why})") from None


def read_safetensors_metadata(path: str | Path, what: str = "weights file") -> dict[str, str]:
    """The string metadata of a safetensors file (``{}`` when it has none)."""
    with _open(path, what) as f:
        return dict(f.metadata() or {})


def read_safetensors(path: str | Path, what: str = "weights file") -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a numpy array, keyed by its name in the file."""
    with _open(path, what) as f:
        return {name: _tensor(f, name, path, what) for name in f.keys()}


def _tensor(f, name: str, path, what: str) -> np.ndarray:
    try:
        return f.get_tensor(name)
    except Exception as e:  # a dtype numpy lacks (bfloat16), bytes past the end of the file
        raise UserError(f"{what} {path}: tensor {name} cannot be read as a numpy array ({e})") from None


def read_model_config(path: str | Path, key: str, what: str) -> dict:
    """The JSON config stored under metadata ``key`` (``what`` names the model in errors: "TTS")."""
    meta = read_safetensors_metadata(path, f"{what} checkpoint")
    if key not in meta:
        raise UserError(f"{path} holds no {what} config (metadata key {key!r}); is it a {what} checkpoint?")
    try:
        config = json.loads(meta[key])
    except json.JSONDecodeError:
        config = None
    if not isinstance(config, dict):
        raise UserError(f"{path} has an unreadable {what} config in its metadata (key {key!r})")
    return config


def _is_leaf_array(x) -> bool:
    return eqx.is_array(x) or isinstance(x, jax.ShapeDtypeStruct)


def load_safetensors(model: eqx.Module, path: str | Path, what: str = "weights file") -> eqx.Module:
    """``model`` with its arrays replaced by those in ``path``, cast to the model's dtypes (a 16-bit
    file loads into a float32 model); every name and shape must match. ``model`` may be abstract
    (``eqx.filter_eval_shape``), so loading costs no random init."""
    params, static = eqx.partition(model, _is_leaf_array)
    want = flatten(params)
    with _open(path, what) as f:
        names = set(f.keys())
        for name, x in want.items():
            got = tuple(f.get_slice(name).get_shape()) if name in names else None
            if got != tuple(x.shape):
                raise UserError(f"{what} {path} does not fit this model: {name} needs shape {tuple(x.shape)}, "
                                f"the file has {got if got is not None else 'no such tensor'}")
        # concrete arrays even when called under a trace (a trainer's eval_shape of init_model): a
        # cached loader must never hold tracers
        with jax.ensure_compile_time_eval():
            flat = {k: jax.numpy.asarray(_tensor(f, k, path, what), dtype=x.dtype) for k, x in want.items()}
    return eqx.combine(unflatten(params, flat), static)


def _to_host(x: jax.Array) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


STORAGE_DTYPES = ("float32", "float16", "bfloat16")


def _stored(name: str, x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` in ``dtype`` if it is floating (integers as they are); a value past the dtype's range
    (float16's 65,504) is a UserError, not a silent infinity."""
    if not jax.numpy.issubdtype(x.dtype, jax.numpy.floating):
        return x
    with np.errstate(over="ignore"):  # checked below, with the tensor's name
        y = x.astype(jax.numpy.dtype(dtype))
    if not np.array_equal(np.isfinite(y.astype(np.float32)), np.isfinite(x.astype(np.float32))):
        raise UserError(f"{name} holds values up to {np.nanmax(np.abs(x.astype(np.float32))):.4g}, "
                        f"beyond {dtype}'s range; store the weights as bfloat16 or float32")
    return y


def export_safetensors(model: eqx.Module, path: str | Path, metadata: dict | None = None,
                       dtype: str | None = None) -> None:
    """Write the model's arrays to ``path`` (keys: dotted names); metadata values that are not
    strings are stored as JSON. ``dtype`` ("float16", "bfloat16", "float32") stores every floating
    array in that dtype, integer arrays as they are, and records it as metadata ``storage_dtype``;
    :func:`load_safetensors` casts back to the model's dtypes. Every process must call this (arrays
    spread over hosts are gathered); process 0 writes, through a temporary file, so readers never
    see half a file."""
    from safetensors.numpy import save_file

    if dtype is not None and dtype not in STORAGE_DTYPES:
        raise UserError(f"storage dtype {dtype!r} must be one of {', '.join(STORAGE_DTYPES)}")
    path = str(path)
    arrays = {k: np.ascontiguousarray(_to_host(v)) for k, v in flatten(eqx.filter(model, eqx.is_array)).items()}
    metadata = dict(metadata or {})
    if dtype is not None:
        arrays = {k: _stored(k, v, dtype) for k, v in arrays.items()}
        metadata["storage_dtype"] = dtype
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
        tmp = path + ".tmp"
        save_file(arrays, tmp, metadata=meta)
        os.replace(tmp, path)
