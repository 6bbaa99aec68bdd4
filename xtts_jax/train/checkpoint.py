"""Checkpoints with orbax-checkpoint, and safetensors export of the final weights.

A checkpoint step directory holds two items: ``state`` (parameters, optimizer state, step, PRNG
key; every array under a dotted path name, sharded as it was on device) and ``meta`` (JSON: the
configs, the data position, the validation loss). Orbax writes each step into a temporary
directory and renames it when complete, so a save killed halfway leaves the previous
checkpoints untouched; the half-written directory is ignored and cleaned up on the next start.
Restoring takes the target shardings from the caller, so a run can resume on another mesh shape.
"""

from __future__ import annotations

import json
import os
from typing import Any

import equinox as eqx
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

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


class Checkpointer:
    """Keeps the last ``keep_last`` checkpoints and the one with the best validation loss."""

    def __init__(self, directory: str, keep_last: int = 2, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        keep = [policies.LatestN(n=keep_last),
                policies.BestN(get_metric_fn=lambda m: m["val_loss"], reverse=True, n=1,
                               keep_checkpoints_without_metrics=False)]
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(keep), create=True,
            enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
        # Handlers named up front, so a fresh process can read metadata before its first save.
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def save(self, step: int, state: Any, meta: dict, val_loss: float | None = None) -> None:
        """Start saving ``state`` (a pytree of arrays) and the JSON ``meta`` at ``step``."""
        meta = dict(meta, step=int(step), val_loss=val_loss)
        args = ocp.args.Composite(state=ocp.args.StandardSave(flatten(state)),
                                  meta=ocp.args.JsonSave(meta))
        metrics = None if val_loss is None else {"val_loss": float(val_loss)}
        self.manager.save(int(step), args=args, metrics=metrics, force=True)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def read_meta(self, step: int) -> dict:
        out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def best_step(self) -> int | None:
        scored = [(m["val_loss"], s) for s in self.steps()
                  if (m := self.read_meta(s)).get("val_loss") is not None]
        return min(scored)[1] if scored else None

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restore onto the shardings in ``abstract_state`` (ShapeDtypeStructs with ``.sharding``).

        A checkpoint whose array names or shapes differ from ``abstract_state`` (another model or
        optimizer) raises UserError before anything is read.
        """
        step = self.latest_step() if step is None else step
        if step is None or step not in self.steps():
            raise UserError(f"no checkpoint at step {step} in {self.directory}")
        want = flatten(abstract_state)
        saved = self.manager.item_metadata(step)["state"]
        saved = getattr(saved, "tree", saved)
        if set(saved) != set(want):
            extra, missing = sorted(set(saved) - set(want)), sorted(set(want) - set(saved))
            raise UserError(
                f"checkpoint {self.directory}/{step} is of another model: it has "
                f"{extra[:1] or 'no extra arrays'} and lacks {missing[:1] or 'no arrays'}")
        # Parameters first: the message should name a weight, not its Adam moment.
        for name, x in sorted(want.items(), key=lambda kv: (not kv[0].startswith("params."), kv[0])):
            if tuple(saved[name].shape) != tuple(x.shape):
                raise UserError(
                    f"checkpoint {self.directory}/{step} is of another model: {name} has shape "
                    f"{tuple(saved[name].shape)}, this model needs {tuple(x.shape)}")
        args = ocp.args.Composite(state=ocp.args.StandardRestore(want), meta=ocp.args.JsonRestore())
        out = self.manager.restore(step, args=args)
        return unflatten(abstract_state, dict(out["state"])), dict(out["meta"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def _to_host(x: jax.Array) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def export_safetensors(model: eqx.Module, path: str, metadata: dict | None = None) -> None:
    """Write the model's arrays to ``path`` (keys: dotted names), config as JSON metadata.

    Every process must call this (arrays spread over hosts are gathered); process 0 writes.
    """
    from safetensors.numpy import save_file

    arrays = {k: np.ascontiguousarray(_to_host(v)) for k, v in flatten(eqx.filter(model, eqx.is_array)).items()}
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
        tmp = path + ".tmp"
        save_file(arrays, tmp, metadata=meta)
        os.replace(tmp, path)  # readers never see a half-written file


def _is_leaf_array(x) -> bool:
    return eqx.is_array(x) or isinstance(x, jax.ShapeDtypeStruct)


def load_safetensors(model: eqx.Module, path: str) -> eqx.Module:
    """``model`` with its arrays replaced by those in ``path``; names and shapes must match.
    ``model`` may be abstract (``eqx.filter_eval_shape``), so loading costs no random init."""
    from safetensors.numpy import load_file

    if not os.path.exists(path):
        raise UserError(f"weights file {path} does not exist")
    loaded = load_file(path)
    params, static = eqx.partition(model, _is_leaf_array)
    want = flatten(params)
    for name, x in want.items():
        if name not in loaded or loaded[name].shape != x.shape:
            got = loaded[name].shape if name in loaded else "nothing"
            raise UserError(f"{path} does not fit this model: {name} needs shape {x.shape}, file has {got}")
    flat = {k: jax.numpy.asarray(loaded[k], dtype=x.dtype) for k, x in want.items()}
    return eqx.combine(unflatten(params, flat), static)


def read_model_config(path: str, key: str, what: str) -> dict:
    """The JSON config stored under metadata ``key`` of an exported safetensors file; a missing
    file, a file that is not safetensors, or one without that key is a one-line error naming ``what``."""
    if not os.path.isfile(path):
        raise UserError(f"{what} checkpoint {path} does not exist")
    try:
        meta = read_safetensors_metadata(path)
    except Exception:
        raise UserError(f"{path} is not a safetensors file") from None
    if key not in meta:
        raise UserError(f"{path} holds no {what} config (metadata key {key!r})")
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError:
        raise UserError(f"{path} has an unreadable {what} config in its metadata") from None


def read_safetensors_metadata(path: str) -> dict:
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        return dict(f.metadata() or {})
