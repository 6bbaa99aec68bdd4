"""Training checkpoints with orbax-checkpoint (the final weights are exported by ``xtts_jax/weights.py``).

A checkpoint step directory holds two items: ``state`` (parameters, optimizer state, step, PRNG
key; every array under a dotted path name, sharded as it was on device) and ``meta`` (JSON: the
configs, the data position, the validation loss). Orbax writes each step into a temporary
directory and renames it when complete, so a save killed halfway leaves the previous
checkpoints untouched; the half-written directory is ignored and cleaned up on the next start.
Restoring takes the target shardings from the caller, so a run can resume on another mesh shape.
"""

from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from xtts_jax.errors import UserError
# Weights I/O lives in xtts_jax/weights.py; the names stay importable from here for the trainer.
from xtts_jax.weights import (_to_host, export_safetensors, flatten, load_safetensors, path_name,  # noqa: F401
                              read_model_config, read_safetensors_metadata, unflatten)


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
