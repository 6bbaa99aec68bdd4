"""The language-model task for the trainer: next-token cross-entropy on a GPT, and text samples.

A batch is int32 ``[B, block_size + 1]`` windows of token ids: inputs are the first T tokens,
targets the last T (nanoGPT's ``get_batch``). ``VocabMap`` optionally renumbers a small corpus's
GPT-2 ids into a compact vocabulary, so a CPU demo does not pay for a 50,257-way output layer.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from xtts_jax.errors import UserError
from xtts_jax.models import gpt as gpt_lib
from xtts_jax.models.gpt import GPT
from xtts_jax.models.gpt_config import GPTConfig
from xtts_jax.text.vocab import VocabMap  # noqa: F401  (re-exported: recipes build it from here)


def cross_entropy(logits: Float[Array, "... V"], targets: Int[Array, "..."]) -> Float[Array, ""]:
    """Mean next-token cross-entropy in nats; the log-sum-exp runs in float32 whatever the logits."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets).mean()


def chunked_cross_entropy(model: GPT, hidden: Float[Array, "B T C"], targets: Int[Array, "B T"],
                          chunk: int) -> Float[Array, ""]:
    """``cross_entropy(model.logits(hidden), targets)`` without the whole [B, T, V] logits tensor.

    A scan over chunks of ``chunk`` positions (every example at once, so a batch-sharded input
    stays sharded) computes each chunk's logits, log-sum-exp and target logit; ``jax.checkpoint``
    makes the backward pass recompute them rather than keep them. At GPT-2 size and batch 32 the
    full float32 logits are 6.6 GB (../shared/ANCHORS.md); here one chunk's are live at a time.
    """
    b, t, c = hidden.shape
    h = hidden.reshape(b, t // chunk, chunk, c).swapaxes(0, 1)
    y = targets.reshape(b, t // chunk, chunk).swapaxes(0, 1)

    @jax.checkpoint
    def chunk_loss(total, xs):
        logits = model.logits(xs[0]).astype(jnp.float32)  # [B, chunk, V]
        target = jnp.take_along_axis(logits, xs[1][..., None], axis=-1)[..., 0]
        return total + jnp.sum(jax.nn.logsumexp(logits, axis=-1) - target), None

    total, _ = jax.lax.scan(chunk_loss, jnp.zeros((), jnp.float32), (h, y))
    return total / (b * t)


def unigram_entropy(counts: np.ndarray) -> float:
    """Entropy in nats of the token frequency distribution: the loss of a model with no context."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@dataclasses.dataclass(frozen=True)
class LMTask:
    """Next-token prediction with a ``GPT`` of ``config``; ``vocab`` set when ids are compacted."""

    config: GPTConfig
    vocab: VocabMap | None = None
    prompts: tuple[str, ...] = ("Once upon a time",)  # what ``sample`` continues
    loss_chunk: int = 0  # > 0: cross-entropy over chunks of this many positions (chunked_cross_entropy)
    # The GPT's matmul dtype while training (cpu_kernels.training_dtype); None: config's. Not saved:
    # the exported model.safetensors carries ``config`` as given, so loading it computes as before.
    compute_dtype: str | None = None

    def __post_init__(self):
        if self.loss_chunk < 0 or (self.loss_chunk and self.config.block_size % self.loss_chunk):
            raise UserError(f"loss_chunk {self.loss_chunk} must be 0 or divide block_size {self.config.block_size}")

    def init_model(self, key: PRNGKeyArray) -> GPT:
        if self.compute_dtype is None:
            return GPT(self.config, key=key)
        return GPT(dataclasses.replace(self.config, compute_dtype=self.compute_dtype), key=key)

    def logical_axes(self, model: GPT) -> Any:
        return gpt_lib.logical_axes(model)

    def loss(self, model: GPT, batch: Int[Array, "B T1"], key: PRNGKeyArray | None
             ) -> tuple[Float[Array, ""], dict]:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        keys = None
        if key is not None and self.config.dropout > 0:
            keys = jax.random.split(key, batch.shape[0])
        if self.loss_chunk:
            hidden = jax.vmap(lambda x, k: model.hidden(x, key=k))(inputs, keys)
            loss = chunked_cross_entropy(model, hidden, targets, self.loss_chunk)
        else:
            logits = jax.vmap(lambda x, k: model(x, key=k))(inputs, keys)
            loss = cross_entropy(logits, targets)
        return loss, {"loss": loss}

    def flops_per_token(self, seq_len: int) -> float:
        return float(self.config.flops_per_token(seq_len))

    def to_dict(self) -> dict:
        return {"gpt": self.config.to_dict(), "prompts": list(self.prompts), "loss_chunk": self.loss_chunk,
                "vocab_ids": None if self.vocab is None else list(self.vocab.ids)}

    @classmethod
    def from_dict(cls, d: dict) -> "LMTask":
        cfg = GPTConfig.from_dict(d["gpt"])
        vocab = None if d.get("vocab_ids") is None else VocabMap(tuple(d["vocab_ids"]))
        return cls(cfg, vocab, tuple(d.get("prompts", cls.prompts)), d.get("loss_chunk", 0))

    # --- samples -------------------------------------------------------------------------
    def encode(self, text: str, strict: bool = True) -> np.ndarray:
        """Model ids of ``text``. With a compact vocabulary, words outside it are refused by name
        (``strict``: a person's prompt) or left out (the task's own sample prompts, which a
        corpus need not cover: a training run must not fail on them at its end)."""
        from xtts_jax.text.tokenizer import encode

        if self.vocab is not None and strict:
            return self.vocab.encode(text, allow_eot=True)
        ids = np.asarray(encode(text), np.int64)
        return ids if self.vocab is None else self.vocab.to_compact(ids, drop_unknown=True)

    def decode(self, ids: Sequence[int]) -> str:
        from xtts_jax.text.tokenizer import decode

        ids = np.asarray(ids)
        return decode([int(i) for i in (ids if self.vocab is None else self.vocab.to_gpt2(ids))])

    def sample(self, model: GPT, key: PRNGKeyArray, prompts: Sequence[str] | None = None,
               max_new_tokens: int = 64, temperature: float = 0.8, top_k: int = 40, top_p: float = 1.0,
               repetition_penalty: float = 1.0) -> list[str]:
        """Continue each prompt with the KV-cache sampler (one jit for the batch); stops at
        ``<|endoftext|>``. Returns prompt + continuation texts."""
        from xtts_jax.inference.sampling import SamplingConfig, generate

        given = prompts is not None
        prompts = list(prompts if given else self.prompts)
        ids = [self.encode(p, strict=given) for p in prompts]
        if any(len(i) == 0 for i in ids):
            raise UserError("a prompt encodes to no known tokens; give some text")
        room = self.config.block_size - max(len(i) for i in ids)
        if room < 1:
            raise UserError(f"the longest prompt fills the model's {self.config.block_size} positions")
        cfg = SamplingConfig(temperature=temperature, top_k=min(top_k, self.config.vocab_size), top_p=top_p,
                             repetition_penalty=repetition_penalty, max_new_tokens=min(max_new_tokens, room),
                             stop_token=self.eot_id())
        new = generate(model, [list(map(int, i)) for i in ids], key, cfg)
        return [p + self.decode(n) for p, n in zip(prompts, new)]

    def eot_id(self) -> int | None:
        from xtts_jax.text.tokenizer import EOT_ID

        if self.vocab is None:
            return EOT_ID
        return self.vocab.ids.index(EOT_ID) if EOT_ID in self.vocab.ids else None


def load_lm(path: str | Path) -> tuple[GPT, LMTask]:
    """(model, task) of a text LM the trainer exported: ``model.safetensors`` (or its run folder),
    the task's config under metadata ``config``; anything else is one sentence naming the file."""
    import equinox as eqx

    from xtts_jax.weights import load_safetensors, read_model_config

    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    task = read_model_config(path, "config", "language-model").get("task")
    if not isinstance(task, dict) or "gpt" not in task:
        raise UserError(f"{path} is not a language-model export (recipes/tinystories_pretrain.py writes one)")
    task = LMTask.from_dict(task)
    model = load_safetensors(eqx.filter_eval_shape(task.init_model, jax.random.key(0)), path, "language-model checkpoint")
    return model, task
