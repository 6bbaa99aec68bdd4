"""Training configuration, learning-rate schedule and the AdamW optimizer.

Choices follow nanoGPT's ``train.py`` (AdamW, betas (0.9, 0.95), linear warmup then cosine decay
to ``min_lr``, global-norm clipping at 1.0) and minGPT's ``configure_optimizers`` for which
parameters decay: only matrices used in matmuls; never biases, norm scales or embeddings.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from xtts_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything the loop needs; serialised next to every checkpoint (``config.json``)."""

    steps: int = 1000
    batch_size: int = 16  # global batch in sequences, over all devices and processes
    grad_accum: int = 1  # micro-batches per optimizer step (batch_size must divide by it)
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # 0 disables clipping
    eval_every: int = 250
    eval_steps: int = 20
    ckpt_every: int = 500  # and always after the last step
    # Also save at the first log step this long after the last save, so a crash early in a slow
    # run loses minutes, not everything; 0: step interval only.
    ckpt_every_seconds: float = 120.0
    keep_last: int = 2
    log_every: int = 10
    sample_every: int = 0  # text samples every N steps and at the end; 0: none
    seed: int = 0
    out_dir: str = "runs/default"
    peak_flops: float = 0.0  # per-device peak FLOP/s for MFU; 0: MFU not reported
    # Where the cosine reaches min_lr (0: at ``steps``). A resumed run keeps its checkpoint's, so
    # asking for more steps trains the extra ones at min_lr instead of re-stretching the cosine.
    schedule_steps: int = 0

    def __post_init__(self):
        checks = {
            "steps": self.steps >= 1, "batch_size": self.batch_size >= 1,
            "grad_accum": self.grad_accum >= 1, "lr": self.lr > 0,
            "min_lr": 0 <= self.min_lr <= self.lr, "warmup_steps": self.warmup_steps >= 0,
            "weight_decay": self.weight_decay >= 0, "grad_clip": self.grad_clip >= 0,
            "eval_every": self.eval_every >= 0, "eval_steps": self.eval_steps >= 1,
            "ckpt_every": self.ckpt_every >= 0, "ckpt_every_seconds": self.ckpt_every_seconds >= 0,
            "schedule_steps": self.schedule_steps >= 0, "keep_last": self.keep_last >= 1,
            "log_every": self.log_every >= 1, "sample_every": self.sample_every >= 0,
            "betas": len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
        }
        for name, ok in checks.items():
            if not ok:
                raise UserError(f"TrainConfig.{name} = {getattr(self, name)!r} is out of range")
        if self.batch_size % self.grad_accum:
            raise UserError(
                f"batch_size {self.batch_size} does not divide into grad_accum {self.grad_accum}")


# The fields that make the learning-rate schedule: a resumed run takes them from its checkpoint.
SCHEDULE_FIELDS = ("lr", "min_lr", "warmup_steps", "schedule_steps")


def schedule_fields(train: dict) -> dict:
    """The schedule of a TrainConfig given as a dict (``dataclasses.asdict``, as checkpoints store
    it), with ``schedule_steps`` made explicit (checkpoints that predate the field ended at ``steps``)."""
    fields = {k: train.get(k) for k in SCHEDULE_FIELDS}
    fields["schedule_steps"] = fields["schedule_steps"] or train["steps"]
    return fields


def describe_schedule(fields: dict) -> str:
    return (f"warmup {fields['warmup_steps']} steps to lr {fields['lr']:g}, cosine to min_lr "
            f"{fields['min_lr']:g} at step {fields['schedule_steps']}")


def lr_schedule(cfg: TrainConfig) -> optax.Schedule:
    """Linear warmup from 0 to ``lr`` over ``warmup_steps``, cosine decay to ``min_lr`` at
    ``schedule_steps`` (default ``steps``), then ``min_lr``.

    As nanoGPT's ``get_lr``: lr * (step + 1) / warmup during warmup, so step 0 is not wasted.
    """
    warmup = max(cfg.warmup_steps, 1)
    decay = max((cfg.schedule_steps or cfg.steps) - cfg.warmup_steps, 1)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        warm = cfg.lr * (step + 1) / warmup
        t = jnp.clip((step - cfg.warmup_steps) / decay, 0.0, 1.0)
        cos = cfg.min_lr + 0.5 * (1 + jnp.cos(jnp.pi * t)) * (cfg.lr - cfg.min_lr)
        return jnp.where(step < cfg.warmup_steps, warm, cos)

    return schedule


def decay_mask(model: eqx.Module, logical: Any | None = None) -> Any:
    """True at parameters that take weight decay: matmul weights, not embeddings, norms, biases.

    A leaf counts as a matrix when it has two or more dimensions apart from a leading "layers"
    axis (scanned layers stack a norm's [embed] scale into [layers, embed]), is not named
    ``bias`` and does not sit in a ``*Norm*`` module. Embeddings are the weights of
    ``eqx.nn.Embedding`` modules, fields named ``wte``/``wpe`` or ``*emb*``, and leaves whose
    logical axes start with "vocab" or "pos"; a tied output head shares the token table and so is
    not decayed either, as in minGPT. (nanoGPT itself decays its embeddings.)
    """
    params = eqx.filter(model, eqx.is_array)

    def exempt_module(x) -> bool:  # every array inside these keeps its values: no decay
        return isinstance(x, eqx.nn.Embedding) or (isinstance(x, eqx.Module) and "Norm" in type(x).__name__)

    def flag(x):
        if exempt_module(x):
            return jax.tree_util.tree_map(lambda a: False if eqx.is_array(a) else None, x)
        return x.ndim >= 2 if eqx.is_array(x) else None

    flags = jax.tree_util.tree_map(flag, model, is_leaf=exempt_module)
    # Biases, and raw embedding tables held as arrays (GPT-2's wte/wpe, any field named *emb*).
    flags = jax.tree_util.tree_map_with_path(
        lambda path, f: f and not _EMBEDDING_NAME.search(_last_name(path)) and _key(path[-1]) != "bias",
        flags)
    if logical is not None:
        def by_axes(flag, spec, x):
            names = tuple(spec) + (None,) * (x.ndim - len(spec))
            if names and names[0] == "layers":
                names = names[1:]
            return flag and len(names) >= 2 and names[0] not in ("vocab", "pos")
        flags = jax.tree_util.tree_map(by_axes, flags, logical, params,
                                       is_leaf=lambda x: isinstance(x, P))
    return flags


_EMBEDDING_NAME = re.compile(r"^(wte|wpe)$|emb", re.IGNORECASE)


def _key(k) -> str:
    return str(getattr(k, "name", getattr(k, "key", "")))


def _last_name(path) -> str:
    names = [_key(k) for k in path]
    names = [n for n in names if n and n != "weight"]
    return names[-1] if names else ""


def make_optimizer(cfg: TrainConfig, model: eqx.Module, logical: Any | None = None
                   ) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW with the masked decoupled weight decay."""
    mask = decay_mask(model, logical)
    adamw = optax.adamw(lr_schedule(cfg), b1=cfg.betas[0], b2=cfg.betas[1],
                        weight_decay=cfg.weight_decay, mask=mask)
    if cfg.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw)
    return adamw
