"""The one training loop: any Task (text LM, DVAE, TTS, vocoder) on any mesh, resumable exactly.

A Task brings ``init_model(key)`` and ``loss(model, batch, key) -> (loss, metrics)``; optionally
``logical_axes(model)`` (sharding names), ``flops_per_token(seq_len)`` (for MFU),
``tokens_in_batch(batch_shape)`` (what tokens/s counts), ``sample(model, key) -> list[str]``,
``to_dict()`` (saved with checkpoints), ``optimizer(cfg, model, logical)`` and a pure
``train_step(state, batch, key, *, static, optimizer) -> (state, metrics)`` for training that one
gradient step does not describe (GANs). The state is a dict of arrays: ``params`` (the model's
arrays), ``opt_state``, ``step`` and ``key``. One jitted step, state donated; metrics stay on device
until every ``log_every`` steps. Batches come from ``train_data(step)``, a pure function returning
this process's rows, so resuming at step s sees exactly the batches an uninterrupted run would have
seen. A resumed run continues the learning-rate schedule stored in its checkpoint (see
``optim.schedule_fields``), and ``metrics.jsonl`` keeps one history: records past the checkpoint's
step are dropped and a ``{"kind": "resume"}`` record marks where the run picked up.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from xtts_jax.errors import UserError
from xtts_jax.train import sharding as shd
from xtts_jax.train.checkpoint import Checkpointer, export_safetensors
from xtts_jax.train.data import Prefetcher
from xtts_jax.train.metrics import MetricsLogger
from xtts_jax.train.optim import (SCHEDULE_FIELDS, TrainConfig, describe_schedule, lr_schedule, make_optimizer,
                                  schedule_fields)

BatchFn = Callable[[int], np.ndarray]


class Task(Protocol):
    def init_model(self, key: jax.Array) -> eqx.Module: ...
    def loss(self, model: eqx.Module, batch: jax.Array, key: jax.Array | None) -> tuple[jax.Array, dict]: ...


def _shape_model(abstract: Any) -> Any:
    """The model with zero-stride numpy stand-ins for its arrays: right shapes, no memory."""
    def stand_in(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return np.broadcast_to(np.zeros((), x.dtype), x.shape)
        return x
    return jax.tree_util.tree_map(stand_in, abstract)


class Trainer:
    """Builds the mesh, shardings, optimizer and jitted steps for ``task``; ``fit`` runs the loop.

    ``train_data(step)`` / ``eval_data(i)`` return this process's rows of a global batch;
    ``devices`` restricts the mesh to some devices (tests compare 1 device with 8 in one process).
    ``grad_accum`` applies to the default step; a task's own ``train_step`` gets the whole batch.
    """

    def __init__(self, task: Task, cfg: TrainConfig, mesh_cfg: shd.MeshConfig = shd.MeshConfig(),
                 train_data: BatchFn | None = None, eval_data: BatchFn | None = None,
                 meta: dict | None = None, devices: list | None = None):
        self.task, self.cfg, self.mesh_cfg = task, cfg, mesh_cfg
        self.train_data, self.eval_data, self.meta = train_data, eval_data, dict(meta or {})
        self.mesh = shd.make_mesh(mesh_cfg, devices)
        shd.check_batch(cfg.batch_size, self.mesh, cfg.grad_accum)
        self.on_checkpoint: Callable[[int], None] | None = None  # called once a save is on disk

        key = jax.random.PRNGKey(cfg.seed)
        abstract = eqx.filter_eval_shape(task.init_model, key)
        is_param = lambda x: isinstance(x, jax.ShapeDtypeStruct)  # noqa: E731
        self.abstract_params, self.static = eqx.partition(abstract, is_param)
        self._shape_model = _shape_model(abstract)
        logical_fn = getattr(task, "logical_axes", None)
        self.logical = shd.logical_specs_for(self._shape_model, logical_fn)
        self.param_sharding = shd.param_shardings(self.abstract_params, self.mesh, self.logical)
        self._set_optimizer(cfg)

        abstract_state = jax.eval_shape(self._init_state, key)
        self.state_sharding = shd.state_shardings(
            abstract_state, self.abstract_params, self.param_sharding, self.mesh)
        self.abstract_state = jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state, self.state_sharding)
        replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = shd.batch_sharding(self.mesh)
        self.init_state = jax.jit(self._init_state, out_shardings=self.state_sharding)
        self._jit_train_step()
        self.eval_step = jax.jit(self._eval, in_shardings=(self.param_sharding, self.batch_sharding),
                                 out_shardings=replicated)
        self.ckpt = Checkpointer(os.path.join(cfg.out_dir, "checkpoints"), cfg.keep_last)
        self.history: list[dict] = []

    def _set_optimizer(self, cfg: TrainConfig) -> None:
        """The optimizer and schedule of ``cfg`` (the optimizer state's structure does not depend on it)."""
        make_opt = getattr(self.task, "optimizer", None) or make_optimizer
        self.cfg, self.optimizer, self.schedule = cfg, make_opt(cfg, self._shape_model, self.logical), lr_schedule(cfg)

    def _jit_train_step(self) -> None:
        self.train_step = jax.jit(self._step, in_shardings=(self.state_sharding, self.batch_sharding),
                                  out_shardings=(self.state_sharding, NamedSharding(self.mesh, P())),
                                  donate_argnums=0)

    # --- pure functions, jitted once ----------------------------------------------------------
    def _init_state(self, key: jax.Array) -> dict:
        model_key, train_key = jax.random.split(key)
        params = eqx.filter(self.task.init_model(model_key), eqx.is_array)
        params = jax.lax.with_sharding_constraint(params, self.param_sharding)
        return {"params": params, "opt_state": self.optimizer.init(params),
                "step": jnp.zeros((), jnp.int32), "key": train_key}

    def model(self, params: Any) -> eqx.Module:
        return eqx.combine(params, self.static)

    def _grads(self, params: Any, batch: jax.Array, key: jax.Array) -> tuple[dict, Any]:
        """Mean loss metrics and gradients over ``grad_accum`` micro-batches (a scan, not a loop)."""
        def loss_fn(p, b, k):
            return self.task.loss(self.model(p), b, k)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        n = self.cfg.grad_accum
        if n == 1:
            (_, metrics), grads = grad_fn(params, batch, key)
            return metrics, grads
        # Row r goes to micro-batch r % n: each device's rows stay on that device.
        micro = batch.reshape(batch.shape[0] // n, n, *batch.shape[1:]).swapaxes(0, 1)

        def body(acc, xs):
            (_, metrics), grads = grad_fn(params, xs[0], jax.random.fold_in(key, xs[1]))
            return jax.tree_util.tree_map(jnp.add, acc, (metrics, grads)), None

        zeros = jax.tree_util.tree_map(
            jnp.zeros_like, jax.eval_shape(lambda: (grad_fn(params, micro[0], key)[0][1],
                                                    params)))
        total, _ = jax.lax.scan(body, zeros, (micro, jnp.arange(n)))
        return jax.tree_util.tree_map(lambda x: x / n, total)

    def _step(self, state: dict, batch: jax.Array) -> tuple[dict, dict]:
        key = jax.random.fold_in(state["key"], state["step"])
        custom = getattr(self.task, "train_step", None)
        if custom is not None:
            return custom(state, batch, key, static=self.static, optimizer=self.optimizer)
        metrics, grads = self._grads(state["params"], batch, key)
        grads = jax.lax.with_sharding_constraint(grads, self.param_sharding)
        updates, opt_state = self.optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = dict(metrics, grad_norm=optax.tree.norm(grads), lr=self.schedule(state["step"]))
        new = {"params": params, "opt_state": opt_state, "step": state["step"] + 1, "key": state["key"]}
        return new, metrics

    def _eval(self, params: Any, batch: jax.Array) -> dict:
        return self.task.loss(self.model(params), batch, None)[1]

    # --- host side ----------------------------------------------------------------------------
    def config_dict(self) -> dict:
        to_dict = getattr(self.task, "to_dict", None)
        return {"train": dataclasses.asdict(self.cfg), "mesh": dataclasses.asdict(self.mesh_cfg),
                "task": to_dict() if to_dict else type(self.task).__name__, **self.meta}

    def restore_or_init(self, resume: bool) -> dict:
        """The latest checkpoint's state when ``resume`` (saying so), else a fresh one."""
        latest = self.ckpt.latest_step()
        if latest is not None and not resume:
            raise UserError(f"{self.cfg.out_dir} already holds checkpoints (step {latest}); "
                            "pass --resume to continue or choose another out_dir")
        if resume and latest is None:
            self._say(f"nothing to resume: no checkpoint in {self.ckpt.directory}; starting from step 0")
        if resume and latest is not None:
            state, meta = self.ckpt.restore(self.abstract_state, latest)
            self._say(f"resumed from step {latest} ({self.ckpt.directory})")
            self._continue_schedule(meta.get("train"))
            return state
        return self.init_state(jax.random.PRNGKey(self.cfg.seed))

    def _continue_schedule(self, saved: dict | None) -> None:
        """Keep the checkpoint's learning-rate schedule, so a resumed run's lr is continuous: asking
        for more steps does not re-stretch the cosine (steps past its end train at min_lr)."""
        if saved is None:  # a checkpoint written without a train config: the one given is all we have
            return
        kept = schedule_fields(saved)
        asked = schedule_fields(dataclasses.asdict(self.cfg))
        if kept != asked:
            ends, steps = kept["schedule_steps"], self.cfg.steps
            note = f"keeping the checkpoint's learning-rate schedule ({describe_schedule(kept)})"
            if ends < steps:
                note += f": steps {ends + 1}-{steps} train at min_lr {kept['min_lr']:g}"
            elif ends > steps:
                note += f": this run stops at step {steps}, before the cosine ends"
            given = [k for k in SCHEDULE_FIELDS if asked[k] != kept[k]
                     and (k != "schedule_steps" or self.cfg.schedule_steps)]
            if given:
                note += f" (ignored: {', '.join(f'{k} {asked[k]:g}' for k in given)})"
            self._say(note)
        if kept != {k: getattr(self.cfg, k) for k in SCHEDULE_FIELDS}:
            self._set_optimizer(dataclasses.replace(self.cfg, **kept))
            self._jit_train_step()

    def _say(self, text: str) -> None:
        if jax.process_index() == 0:
            print(text, flush=True)

    def evaluate(self, params: Any) -> float:
        return self.evaluate_metrics(params)["loss"]

    def evaluate_metrics(self, params: Any) -> dict[str, float]:
        """The task's metrics (``loss`` and the rest) averaged over ``cfg.eval_steps`` held-out batches."""
        found = jax.device_get([self.eval_step(params, shd.global_batch(self.eval_data(i), self.mesh))
                                for i in range(self.cfg.eval_steps)])
        return {k: float(np.mean([m[k] for m in found])) for k in found[0]}

    def samples(self, params: Any, step: int) -> list[str]:
        sample = getattr(self.task, "sample", None)
        if sample is None or jax.process_count() > 1:
            return []
        return sample(self.model(params), jax.random.PRNGKey(self.cfg.seed + step))

    def fit(self, resume: bool = False, show_progress: bool = True) -> dict:
        """Train to ``cfg.steps``; returns {"state", "val_loss", "history", "samples"}."""
        if self.train_data is None:
            raise UserError("the trainer needs train_data to fit")
        state = self.restore_or_init(resume)
        cfg = self.cfg  # a resume may have set the schedule from the checkpoint
        step = int(jax.device_get(state["step"]))
        if jax.process_index() == 0:
            os.makedirs(cfg.out_dir, exist_ok=True)
            with open(os.path.join(cfg.out_dir, "config.json"), "w") as f:
                json.dump(self.config_dict(), f, indent=2)
        log = MetricsLogger(cfg.out_dir, cfg.steps, step, show_progress=show_progress)
        self._pending, self._t_last, self._val_loss, self._samples = [], time.perf_counter(), None, []
        self._t_saved = time.monotonic()
        # Host batches (and their copy to the devices) are made in a thread, two steps ahead.
        make_batch = lambda s: shd.global_batch(self.train_data(s), self.mesh)  # noqa: E731
        with Prefetcher(make_batch, step, cfg.steps) as batches:
            for step, batch in batches:
                state, metrics = self.train_step(state, batch)
                self._pending.append(metrics)  # stays on device: no copy until the next log
                if len(self._pending) > 1:
                    # One step in flight: step s is queued while s - 1 finishes, so the device never
                    # waits, and the bar counts finished steps instead of racing ahead to the next
                    # log point and stalling there.
                    jax.block_until_ready(self._pending[-2])
                    log.progress(step)
                self._after_step(step + 1, state, batch.shape, log)
        self.ckpt.wait()
        export_safetensors(self.model(state["params"]), os.path.join(cfg.out_dir, "model.safetensors"),
                           {"config": self.config_dict()})
        log.close()
        return {"state": state, "val_loss": self._val_loss, "history": self.history, "samples": self._samples}

    def _due(self, step: int, every: int) -> bool:
        return bool(every) and (step % every == 0 or step == self.cfg.steps)

    def _save_time_due(self) -> bool:
        """``ckpt_every_seconds`` have passed since the last save. Asked only at log steps (the
        host has just synced there anyway); every process must save at the same step, so they
        follow process 0's clock."""
        due = bool(self.cfg.ckpt_every_seconds) and time.monotonic() - self._t_saved >= self.cfg.ckpt_every_seconds
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            due = bool(multihost_utils.broadcast_one_to_all(np.asarray(due)))
        return due

    def _after_step(self, step: int, state: dict, batch_shape: tuple, log: MetricsLogger) -> None:
        """Logging, eval, samples and checkpoints that fall on ``step`` (the count of steps done)."""
        cfg = self.cfg
        logged = self._due(step, cfg.log_every)
        if logged:
            pending = jax.device_get(self._pending)  # the one copy to the host per log_every steps
            values = {k: float(np.mean([m[k] for m in pending])) for k in pending[0]}
            now = time.perf_counter()
            seq_len = batch_shape[-1] - 1 if len(batch_shape) == 2 else batch_shape[-1]
            # What tokens/s counts: the task's own unit (audio tokens, mel frames) where it says,
            # else the next-token targets of [B, T + 1] LM windows.
            count = getattr(self.task, "tokens_in_batch", None)
            tokens = count(batch_shape) if count else cfg.batch_size * seq_len
            values["tokens_per_s"] = len(pending) * tokens / (now - self._t_last)
            flops = getattr(self.task, "flops_per_token", None)
            if flops and cfg.peak_flops > 0:
                values["mfu"] = flops(seq_len) * values["tokens_per_s"] / (cfg.peak_flops * jax.device_count())
            log.log(step, values)
            log.progress(step)
            self.history.append({"step": step, **values})
            self._pending = []
        evaluated = None
        if self.eval_data is not None and self._due(step, cfg.eval_every):
            with log.stage("eval"):
                metrics = self.evaluate_metrics(state["params"])
                evaluated = self._val_loss = metrics["loss"]
            log.log(step, {"val_loss": evaluated, **{f"val_{k}": v for k, v in metrics.items() if k != "loss"}},
                    kind="eval")
        if self._due(step, cfg.sample_every):
            with log.stage("samples"):
                self._samples = self.samples(state["params"], step)
            for text in self._samples:
                log.write(f"[step {step}] {text}")
            log.log(step, {"samples": self._samples}, kind="samples")
        if self._due(step, cfg.ckpt_every) or step == cfg.steps or (logged and self._save_time_due()):
            meta = dict(self.config_dict(), data_position=step, data_seed=cfg.seed)
            with log.stage("save"):
                self.ckpt.save(step, state, meta, val_loss=evaluated)
            self._t_saved = time.monotonic()
            if self.on_checkpoint is not None:
                self.ckpt.wait()
                self.on_checkpoint(step)
        if not self._pending:  # eval, samples and saves do not count against tokens/s
            self._t_last = time.perf_counter()


# --- configs from the command line: --steps 100, --model.n-layer 6, --mesh.fsdp 4 ---------------
def add_config_args(parser, base: Any, prefix: str = "", skip: tuple[str, ...] = ()) -> None:
    """One flag per field of the dataclass instance ``base`` (``--{prefix}{field}``, hyphens for
    underscores as every CLI of the repo spells flags; the underscore spelling is accepted too,
    unlisted). Unset flags keep ``base``'s value, which ``--help`` shows, so pass the base the
    script will really use (its preset). Fields in ``skip`` get no flag (the script sets them).
    Types follow the default values (tuples take several values)."""
    import argparse

    group = parser.add_argument_group(f"{prefix.rstrip('.') or 'train'} config")
    for f in dataclasses.fields(base):
        if f.name in skip:
            continue
        value = getattr(base, f.name)
        kind = type(value) if value is not None else str
        opts = dict(dest=prefix + f.name, default=None)
        if kind is bool:
            opts["type"] = lambda s: {"true": True, "1": True, "false": False, "0": False}[s.lower()]
        elif kind is tuple:
            opts.update(type=type(value[0]), nargs=len(value))
        else:
            opts["type"] = kind
        flag = f"--{prefix}{f.name}"
        group.add_argument(flag.replace("_", "-"), help=f"default {value!r}", **opts)
        if "_" in f.name:
            group.add_argument(flag, help=argparse.SUPPRESS, **opts)


def config_from_args(args: Any, base: Any, prefix: str = "", overrides: dict | None = None) -> Any:
    """``base`` with the fields from ``overrides`` (a JSON config's section), then set flags."""
    names = {f.name for f in dataclasses.fields(base)}
    unknown = set(overrides or {}) - names
    if unknown:
        raise UserError(f"unknown {prefix.rstrip('.') or 'train'} config field(s): {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in (overrides or {}).items()}
    for name in names:
        flag = getattr(args, prefix + name, None)
        if flag is not None:
            values[name] = tuple(flag) if isinstance(flag, list) else flag
    return dataclasses.replace(base, **values)
