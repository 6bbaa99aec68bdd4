"""The language-model task for the trainer: next-token cross-entropy on a GPT, and text samples.

A batch is int32 ``[B, block_size + 1]`` windows of token ids: inputs are the first T tokens,
targets the last T (nanoGPT's ``get_batch``). ``VocabMap`` optionally renumbers a small corpus's
GPT-2 ids into a compact vocabulary, so a CPU demo does not pay for a 50,257-way output layer.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from xtts_jax.models import gpt as gpt_lib
from xtts_jax.models.gpt import GPT, GPTConfig


def cross_entropy(logits: Float[Array, "... V"], targets: Int[Array, "..."]) -> Float[Array, ""]:
    """Mean next-token cross-entropy in nats; the log-sum-exp runs in float32 whatever the logits."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets).mean()


@dataclasses.dataclass(frozen=True)
class VocabMap:
    """GPT-2 ids <-> a compact vocabulary of the ids a corpus actually uses (sorted)."""

    ids: tuple[int, ...]

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> "VocabMap":
        return cls(tuple(int(i) for i in np.flatnonzero(counts)))

    @property
    def size(self) -> int:
        return len(self.ids)

    def to_compact(self, tokens: np.ndarray) -> np.ndarray:
        table = np.zeros(max(self.ids) + 1, np.int32)
        table[np.asarray(self.ids)] = np.arange(self.size, dtype=np.int32)
        return table[tokens]

    def to_gpt2(self, tokens: np.ndarray) -> np.ndarray:
        return np.asarray(self.ids, np.int64)[np.asarray(tokens)]


def unigram_entropy(counts: np.ndarray) -> float:
    """Entropy in nats of the token frequency distribution: the loss of a model with no context."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@dataclasses.dataclass(frozen=True)
class LMTask:
    """Next-token prediction with a ``GPT`` of ``config``; ``vocab`` set when ids are compacted."""

    config: GPTConfig
    vocab: VocabMap | None = None

    def init_model(self, key: PRNGKeyArray) -> GPT:
        return GPT(self.config, key=key)

    def logical_axes(self, model: GPT) -> Any:
        return gpt_lib.logical_axes(model)

    def loss(self, model: GPT, batch: Int[Array, "B T1"], key: PRNGKeyArray | None
             ) -> tuple[Float[Array, ""], dict]:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        if key is not None and self.config.dropout > 0:
            keys = jax.random.split(key, batch.shape[0])
            logits = jax.vmap(lambda x, k: model(x, key=k))(inputs, keys)
        else:
            logits = jax.vmap(model)(inputs)
        loss = cross_entropy(logits, targets)
        return loss, {"loss": loss}

    def flops_per_token(self, seq_len: int) -> float:
        return float(self.config.flops_per_token(seq_len))

    def to_dict(self) -> dict:
        return {"gpt": self.config.to_dict(),
                "vocab_ids": None if self.vocab is None else list(self.vocab.ids)}

    @classmethod
    def from_dict(cls, d: dict) -> "LMTask":
        cfg = GPTConfig.from_dict(d["gpt"])
        return cls(cfg, None if d.get("vocab_ids") is None else VocabMap(tuple(d["vocab_ids"])))

    # --- samples -------------------------------------------------------------------------
    def encode(self, text: str) -> np.ndarray:
        from xtts_jax.text.tokenizer import encode

        ids = np.asarray(encode(text), np.int64)
        return ids if self.vocab is None else self.vocab.to_compact(ids)

    def decode(self, ids: Sequence[int]) -> str:
        from xtts_jax.text.tokenizer import decode

        ids = np.asarray(ids)
        return decode([int(i) for i in (ids if self.vocab is None else self.vocab.to_gpt2(ids))])

    def sample(self, model: GPT, key: PRNGKeyArray, prompts: Sequence[str] = ("Once upon a time",),
               max_new_tokens: int = 48, temperature: float = 0.8) -> list[str]:
        """Continue each prompt; stops at ``<|endoftext|>``. Returns prompt + continuation texts."""
        out = []
        for i, prompt in enumerate(prompts):
            ids = self.encode(prompt)
            total = min(len(ids) + max_new_tokens, self.config.block_size)
            tokens = generate(model, jnp.asarray(ids, jnp.int32), total, temperature,
                              jax.random.fold_in(key, i))
            new = list(np.asarray(tokens)[len(ids):total])
            eot = self._eot_id()
            if eot in new:
                new = new[: new.index(eot)]
            out.append(prompt + self.decode(new))
        return out

    def _eot_id(self) -> int:
        from xtts_jax.text.tokenizer import EOT_ID

        if self.vocab is None:
            return EOT_ID
        return self.vocab.ids.index(EOT_ID) if EOT_ID in self.vocab.ids else -1


@eqx.filter_jit
def generate(model: GPT, prompt: Int[Array, " P"], total: int, temperature: float,
             key: PRNGKeyArray) -> Int[Array, " total"]:
    """Sample up to ``total`` tokens by recomputing the forward pass on a fixed-length buffer.

    Causal attention makes the padding after position t irrelevant to the logits at t, so one
    buffer shape serves every step and the whole loop compiles once (temperature 0: greedy).
    """
    buf = jnp.zeros((total,), jnp.int32).at[: prompt.shape[0]].set(prompt)

    def body(t, carry):
        buf, key = carry
        key, sub = jax.random.split(key)
        logits = model(buf)[t - 1]
        greedy = jnp.argmax(logits)
        sampled = jax.random.categorical(sub, logits / jnp.maximum(temperature, 1e-6))
        nxt = jnp.where(temperature > 0, sampled, greedy).astype(jnp.int32)
        return buf.at[t].set(nxt), key

    buf, _ = jax.lax.fori_loop(prompt.shape[0], total, body, (buf, key))
    return buf


def task_json(task: LMTask) -> str:
    return json.dumps(task.to_dict())
