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
seen.
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
from xtts_jax.train.optim import TrainConfig, lr_schedule, make_optimizer

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
        shape_model = _shape_model(abstract)
        logical_fn = getattr(task, "logical_axes", None)
        self.logical = shd.logical_specs_for(shape_model, logical_fn)
        self.param_sharding = shd.param_shardings(self.abstract_params, self.mesh, self.logical)
        make_opt = getattr(task, "optimizer", None) or make_optimizer
        self.optimizer = make_opt(cfg, shape_model, self.logical)
        self.schedule = lr_schedule(cfg)

        abstract_state = jax.eval_shape(self._init_state, key)
        self.state_sharding = shd.state_shardings(
            abstract_state, self.abstract_params, self.param_sharding, self.mesh)
        self.abstract_state = jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state, self.state_sharding)
        replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = shd.batch_sharding(self.mesh)
        self.init_state = jax.jit(self._init_state, out_shardings=self.state_sharding)
        self.train_step = jax.jit(self._step, in_shardings=(self.state_sharding, self.batch_sharding),
                                  out_shardings=(self.state_sharding, replicated), donate_argnums=0)
        self.eval_step = jax.jit(self._eval, in_shardings=(self.param_sharding, self.batch_sharding),
                                 out_shardings=replicated)
        self.ckpt = Checkpointer(os.path.join(cfg.out_dir, "checkpoints"), cfg.keep_last)
        self.history: list[dict] = []

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
        latest = self.ckpt.latest_step()
        if latest is not None and not resume:
            raise UserError(f"{self.cfg.out_dir} already holds checkpoints (step {latest}); "
                            "pass --resume to continue or choose another out_dir")
        if resume and latest is not None:
            state, _ = self.ckpt.restore(self.abstract_state, latest)
            return state
        return self.init_state(jax.random.PRNGKey(self.cfg.seed))

    def evaluate(self, params: Any) -> float:
        losses = [self.eval_step(params, shd.global_batch(self.eval_data(i), self.mesh))["loss"]
                  for i in range(self.cfg.eval_steps)]
        return float(np.mean(jax.device_get(losses)))

    def samples(self, params: Any, step: int) -> list[str]:
        sample = getattr(self.task, "sample", None)
        if sample is None or jax.process_count() > 1:
            return []
        return sample(self.model(params), jax.random.PRNGKey(self.cfg.seed + step))

    def fit(self, resume: bool = False, show_progress: bool = True) -> dict:
        """Train to ``cfg.steps``; returns {"state", "val_loss", "history", "samples"}."""
        cfg = self.cfg
        if self.train_data is None:
            raise UserError("the trainer needs train_data to fit")
        state = self.restore_or_init(resume)
        step = int(jax.device_get(state["step"]))
        if jax.process_index() == 0:
            os.makedirs(cfg.out_dir, exist_ok=True)
            with open(os.path.join(cfg.out_dir, "config.json"), "w") as f:
                json.dump(self.config_dict(), f, indent=2)
        log = MetricsLogger(cfg.out_dir, cfg.steps, step, show_progress=show_progress)
        self._pending, self._t_last, self._val_loss, self._samples = [], time.perf_counter(), None, []
        # Host batches (and their copy to the devices) are made in a thread, two steps ahead.
        make_batch = lambda s: shd.global_batch(self.train_data(s), self.mesh)  # noqa: E731
        with Prefetcher(make_batch, step, cfg.steps) as batches:
            for step, batch in batches:
                state, metrics = self.train_step(state, batch)
                self._pending.append(metrics)  # stays on device: no sync until the next log
                self._after_step(step + 1, state, batch.shape, log)
        self.ckpt.wait()
        export_safetensors(self.model(state["params"]), os.path.join(cfg.out_dir, "model.safetensors"),
                           {"config": self.config_dict()})
        log.close()
        return {"state": state, "val_loss": self._val_loss, "history": self.history, "samples": self._samples}

    def _due(self, step: int, every: int) -> bool:
        return bool(every) and (step % every == 0 or step == self.cfg.steps)

    def _after_step(self, step: int, state: dict, batch_shape: tuple, log: MetricsLogger) -> None:
        """Logging, eval, samples and checkpoints that fall on ``step`` (the count of steps done)."""
        cfg = self.cfg
        if self._due(step, cfg.log_every):
            pending = jax.device_get(self._pending)  # the one host sync per log_every steps
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
            self.history.append({"step": step, **values})
            self._pending = []
        evaluated = None
        if self.eval_data is not None and self._due(step, cfg.eval_every):
            evaluated = self._val_loss = self.evaluate(state["params"])
            log.log(step, {"val_loss": evaluated}, kind="eval")
        if self._due(step, cfg.sample_every):
            self._samples = self.samples(state["params"], step)
            for text in self._samples:
                log.write(f"[step {step}] {text}")
            log.log(step, {"samples": self._samples}, kind="samples")
        if self._due(step, cfg.ckpt_every) or step == cfg.steps:
            meta = dict(self.config_dict(), data_position=step, data_seed=cfg.seed)
            self.ckpt.save(step, state, meta, val_loss=evaluated)
            if self.on_checkpoint is not None:
                self.ckpt.wait()
                self.on_checkpoint(step)
        log.progress(step)
        if not self._pending:  # eval, samples and saves do not count against tokens/s
            self._t_last = time.perf_counter()


# --- configs from the command line: --steps 100, --model.n_layer 6, --mesh.fsdp 4 ---------------
def add_config_args(parser, base: Any, prefix: str = "") -> None:
    """One flag per field of the dataclass instance ``base`` (``--{prefix}{field}``); unset flags
    keep ``base``'s value. Types follow the default values (tuples take several values)."""
    group = parser.add_argument_group(f"{prefix.rstrip('.') or 'train'} config")
    for f in dataclasses.fields(base):
        value = getattr(base, f.name)
        kind = type(value) if value is not None else str
        opts = dict(dest=prefix + f.name, default=None, help=f"default {value!r}")
        if kind is bool:
            opts["type"] = lambda s: {"true": True, "1": True, "false": False, "0": False}[s.lower()]
        elif kind is tuple:
            opts.update(type=type(value[0]), nargs=len(value))
        else:
            opts["type"] = kind
        group.add_argument(f"--{prefix}{f.name}", **opts)


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
