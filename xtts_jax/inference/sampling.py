"""Autoregressive sampling with a preallocated KV cache, the whole loop inside one jit.

Works for any model with ``prefill(tokens [P], max_len) -> (logits [P, V], cache)`` and
``decode_step(cache, token, pos) -> (cache, logits [V])`` (the GPT here; the TTS model too).
Prompts are right-padded to a common length; each row starts generating after its own prompt
and stops on its own, so a short row never runs into another row's positions.

Logit processing follows Hugging Face ``generate`` in order: repetition penalty (CTRL, Keskar
et al. 2019: divide positive logits, multiply negative ones), temperature, top-k, top-p.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from xtts_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 0  # 0 means off
    top_p: float = 1.0  # 1 means off
    repetition_penalty: float = 1.0  # 1 means off
    max_new_tokens: int = 64
    stop_token: int | None = None
    penalize_prompt: bool = True  # HF counts the prompt as "seen"; XTTS penalises generated audio tokens only
    # Ids the repetition penalty counts as seen from the first step. XTTS-v2 hands HF generate a
    # stand-in prompt of id 1 repeated, then the audio start token (coqui's GPT.compute_embeddings),
    # so its penalty covers audio code 1 and the start token before anything is generated.
    seen_tokens: tuple[int, ...] = ()

    def __post_init__(self):
        if self.temperature < 0:
            raise UserError(f"temperature {self.temperature} must be >= 0 (0 is greedy)")
        if self.top_k < 0:
            raise UserError(f"top_k {self.top_k} must be >= 0 (0 is off)")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"top_p {self.top_p} must lie in (0, 1]")
        if self.repetition_penalty <= 0:
            raise UserError(f"repetition_penalty {self.repetition_penalty} must be > 0")
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens {self.max_new_tokens} must be >= 1")
        if any(int(t) < 0 for t in self.seen_tokens):
            raise UserError(f"seen_tokens {self.seen_tokens} must be token ids >= 0")

    def initial_seen(self, vocab: int) -> np.ndarray:
        """``[vocab]`` bool: the ids in ``seen_tokens``."""
        seen = np.zeros(vocab, bool)
        seen[[t for t in self.seen_tokens if t < vocab]] = True
        return seen


class Generation(NamedTuple):
    tokens: Int[Array, "B N"]  # generated tokens; after a row stops, its stop token repeats
    lengths: Int[Array, " B"]  # generated tokens per row, the stop token not counted
    stopped: Bool[Array, " B"]  # True where the row emitted its stop token


def process_logits(logits: Float[Array, " V"], seen: Bool[Array, " V"], cfg: SamplingConfig) -> Float[Array, " V"]:
    """Repetition penalty and temperature (not the top-k/top-p cut, which ``sample_token`` applies)."""
    logits = logits.astype(jnp.float32)
    if cfg.repetition_penalty != 1.0:
        penalised = jnp.where(logits > 0, logits / cfg.repetition_penalty, logits * cfg.repetition_penalty)
        logits = jnp.where(seen, penalised, logits)
    return logits / cfg.temperature if cfg.temperature > 0 else logits


def _top_p_keep(sorted_logits: Float[Array, " K"], top_p: float) -> Bool[Array, " K"]:
    """Keep the smallest prefix of descending logits whose probability reaches top_p (at least one)."""
    probs = jax.nn.softmax(sorted_logits)
    mass_before = jnp.cumsum(probs) - probs
    return mass_before < top_p


def sample_token(key: PRNGKeyArray, logits: Float[Array, " V"], seen: Bool[Array, " V"], cfg: SamplingConfig) -> Int[Array, ""]:
    logits = process_logits(logits, seen, cfg)
    if cfg.temperature == 0:
        return jnp.argmax(logits).astype(jnp.int32)
    if cfg.top_k > 0:  # top-p then only needs the k survivors, already sorted by lax.top_k
        values, index = jax.lax.top_k(logits, min(cfg.top_k, logits.shape[-1]))
    elif cfg.top_p < 1.0:
        index = jnp.argsort(-logits)
        values = logits[index]
    else:
        return jax.random.categorical(key, logits).astype(jnp.int32)
    if cfg.top_p < 1.0:
        values = jnp.where(_top_p_keep(values, cfg.top_p), values, -jnp.inf)
    return index[jax.random.categorical(key, values)].astype(jnp.int32)


def _one_hot_seen(tokens: Int[Array, "B P"], valid: Bool[Array, "B P"], vocab: int) -> Bool[Array, "B V"]:
    rows = jnp.zeros((tokens.shape[0], vocab), bool)
    return jax.vmap(lambda r, t, m: r.at[t].max(m))(rows, tokens, valid)


def unstack_layers(model):
    """``model`` with every ``gpt.Transformer`` in it holding one Block per layer, for a decode loop
    (``Transformer.unstacked``); other models unchanged."""
    from xtts_jax.models.gpt import Transformer

    is_transformer = lambda m: isinstance(m, Transformer)  # noqa: E731
    return jax.tree.map(lambda m: m.unstacked() if is_transformer(m) else m, model, is_leaf=is_transformer)


@eqx.filter_jit
def generate_padded(model, prompts, prompt_lengths, key, cfg: SamplingConfig, cache_len: int) -> Generation:
    """The whole sampling loop in one jit, on right-padded prompts ``[B, P]`` with their lengths
    (what :func:`generate` calls after bucketing; benchmarks time it directly)."""
    batch, n_new = prompts.shape[0], cfg.max_new_tokens
    # Decoding at small batch is bound by reading the weights: cast them to the compute dtype once
    # here, not on every step inside the loop.
    dtype = getattr(getattr(model, "config", None), "dtype", None)
    if dtype is not None:
        model = jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, model)
    logits_all, cache = jax.vmap(lambda p: model.prefill(p, cache_len))(prompts)
    model = unstack_layers(model)  # each layer's weights sliced once here, not on every step
    last = jnp.take_along_axis(logits_all, (prompt_lengths - 1)[:, None, None], axis=1)[:, 0]
    vocab = last.shape[-1]
    valid = jnp.arange(prompts.shape[1])[None] < prompt_lengths[:, None]
    seen = _one_hot_seen(prompts, valid & cfg.penalize_prompt, vocab) | cfg.initial_seen(vocab)[None]
    pad = jnp.int32(cfg.stop_token if cfg.stop_token is not None else 0)
    state = dict(step=jnp.int32(0), cache=cache, logits=last, pos=prompt_lengths.astype(jnp.int32),
                 out=jnp.full((batch, n_new), pad), done=jnp.zeros(batch, bool), stopped=jnp.zeros(batch, bool),
                 lengths=jnp.zeros(batch, jnp.int32), seen=seen, key=key)

    def cond(s):
        return (s["step"] < n_new) & ~jnp.all(s["done"])

    def body(s):
        key, sub = jax.random.split(s["key"])
        token = jax.vmap(lambda k, lg, sn: sample_token(k, lg, sn, cfg))(jax.random.split(sub, batch), s["logits"], s["seen"])
        token = jnp.where(s["done"], pad, token)
        is_stop = (token == cfg.stop_token) & ~s["done"] if cfg.stop_token is not None else jnp.zeros(batch, bool)
        live = ~s["done"] & ~is_stop
        cache, logits = jax.vmap(model.decode_step)(s["cache"], token, s["pos"])
        return dict(step=s["step"] + 1, cache=cache, logits=logits, pos=jnp.where(live, s["pos"] + 1, s["pos"]),
                    out=s["out"].at[:, s["step"]].set(token), done=s["done"] | is_stop,
                    stopped=s["stopped"] | is_stop, lengths=s["lengths"] + live,
                    seen=jax.vmap(lambda r, t, m: r.at[t].max(m))(s["seen"], token, live), key=key)

    s = jax.lax.while_loop(cond, body, state)
    return Generation(s["out"], s["lengths"], s["stopped"])


def pad_prompts(prompts: Sequence[Sequence[int]], pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad ragged prompts into [B, P] int32 and their lengths [B]."""
    if len(prompts) == 0 or any(len(p) == 0 for p in prompts):
        raise UserError("every prompt needs at least one token (use <|endoftext|> to start from nothing)")
    lengths = np.array([len(p) for p in prompts], np.int32)
    out = np.full((len(prompts), lengths.max()), pad, np.int32)
    for i, p in enumerate(prompts):
        out[i, : len(p)] = p
    return out, lengths


def generate(model, prompts: Sequence[Sequence[int]], key: PRNGKeyArray, cfg: SamplingConfig,
             max_positions: int | None = None, vocab_size: int | None = None) -> list[list[int]]:
    """Sample continuations of ragged prompts; returns each row's new tokens (stop token excluded).

    The same ``key`` gives the same tokens. ``max_positions`` and ``vocab_size`` default to the
    GPT config's block_size and vocab_size.
    """
    max_positions = max_positions or model.config.block_size
    vocab_size = vocab_size or model.config.vocab_size
    tokens, lengths = pad_prompts(prompts)
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        bad = tokens.min() if tokens.min() < 0 else tokens.max()
        raise UserError(f"prompt token id {bad} is outside the vocabulary [0, {vocab_size})")
    if tokens.shape[1] + cfg.max_new_tokens > max_positions:
        raise UserError(f"prompt of {tokens.shape[1]} tokens + max_new_tokens {cfg.max_new_tokens} exceeds the "
                        f"model's {max_positions} positions")
    # Pad the prompt length up to a multiple of 16 where it fits: one compile serves many lengths.
    bucket = min(-(-tokens.shape[1] // 16) * 16, max_positions - cfg.max_new_tokens)
    tokens = np.pad(tokens, ((0, 0), (0, bucket - tokens.shape[1])))
    cache_len = bucket + cfg.max_new_tokens
    out = generate_padded(model, jnp.asarray(tokens), jnp.asarray(lengths), key, cfg, cache_len)
    toks, lens = np.asarray(out.tokens), np.asarray(out.lengths)
    return [toks[i, : lens[i]].tolist() for i in range(len(prompts))]
