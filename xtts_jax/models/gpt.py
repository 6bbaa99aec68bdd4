"""GPT-2 in Equinox: the transformer stack with a KV-cache decode path, and the LM.

Read top to bottom (the config and its presets are in ``gpt_config.py``): attention, block,
``Transformer`` (stacked blocks run under ``lax.scan`` or unrolled, plus the final norm), ``GPT``
(embeddings + transformer + head), and ``logical_axes`` (names for sharding). The TTS model reuses ``Transformer`` with its own
embeddings and heads. Modules take one unbatched example; callers ``vmap``.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float, Int, PRNGKeyArray

from xtts_jax.errors import UserError
from xtts_jax.models import cpu_kernels
from xtts_jax.models.gpt_config import QUERY_BLOCK, GPTConfig
from xtts_jax.models.layers import MLP, Dense, LayerNorm, matmul, residual_std

def _dropout(x: Array, rate: float, key: PRNGKeyArray | None) -> Array:
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


class KVCache(NamedTuple):
    """Keys and values of every layer for one sequence: each [n_layer, n_head, max_len, head_dim].
    Heads before positions: a decode step's attention then reads each layer's cache as it lies
    (batched over heads) instead of transposing all of it every step (XLA on CPU did)."""

    k: Array
    v: Array


def blocked_causal_attention(q: Float[Array, "T H D"], k: Float[Array, "T H D"], v: Float[Array, "T H D"],
                             block: int = QUERY_BLOCK, bias: Float[Array, "H T T"] | None = None) -> Float[Array, "T H D"]:
    """Causal softmax attention with the queries in blocks of ``block`` rows: block i scores only
    the keys up to its own last row, so most of the masked upper triangle is never computed (3/8
    of the scores at 4 blocks). Scores and softmax in float32. On XLA's CPU backend, which has no
    fused attention kernel, attention alone (B 32, T 256, 4 heads of 48) ran forward+backward about
    1.5x faster than ``jax.nn.dot_product_attention``'s XLA path, as fast as torch's SDPA, and the
    demo-size training step 1.36x (bench/bench_train.py with ``--model.attention xla`` / ``blocked``).
    ``bias``: added to the scores (e.g. an alignment prior), as ``jax.nn.dot_product_attention``'s."""
    t = q.shape[0]
    q = q * jnp.asarray(1 / math.sqrt(q.shape[-1]), q.dtype)
    out = []
    for lo in range(0, t, block):
        hi = min(lo + block, t)
        s = jnp.einsum("qhd,khd->hqk", q[lo:hi], k[:hi], preferred_element_type=jnp.float32)
        if bias is not None:
            s = s + bias[:, lo:hi, :hi]
        s = jnp.where(jnp.arange(lo, hi)[:, None] >= jnp.arange(hi)[None, :], s, -jnp.inf)
        p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
        out.append(jnp.einsum("hqk,khd->qhd", p, v[:hi]))
    return jnp.concatenate(out)


class CausalSelfAttention(eqx.Module):
    c_attn: Dense
    c_proj: Dense
    n_head: int = eqx.field(static=True)
    implementation: str = eqx.field(static=True)

    def __init__(self, cfg: GPTConfig, *, key: PRNGKeyArray):
        k1, k2 = jax.random.split(key)
        self.c_attn = Dense(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias, std=0.02, key=k1)
        self.c_proj = Dense(cfg.n_embd, cfg.n_embd, bias=cfg.bias, std=residual_std(cfg.n_layer), key=k2)
        self.n_head = cfg.n_head
        self.implementation = cfg.attention_impl

    def qkv(self, x: Float[Array, "T C"]) -> tuple[Array, Array, Array]:
        q, k, v = jnp.split(self.c_attn(x), 3, axis=-1)
        split = lambda t: t.reshape(*t.shape[:-1], self.n_head, -1)  # noqa: E731
        return split(q), split(k), split(v)

    def __call__(self, x: Float[Array, "T C"], bias: Float[Array, "H T T"] | None = None
                 ) -> tuple[Float[Array, "T C"], tuple[Array, Array]]:
        q, k, v = self.qkv(x)
        if self.implementation == "blocked" and bias is None and cpu_kernels.applies(q.dtype):
            y = cpu_kernels.causal_attention(q, k, v, QUERY_BLOCK)  # the same arithmetic, bf16 kernels throughout
        elif self.implementation == "blocked":
            y = blocked_causal_attention(q, k, v, bias=bias)
        else:
            bias = None if bias is None else bias.astype(q.dtype)
            y = jax.nn.dot_product_attention(q, k, v, bias=bias, is_causal=True, implementation=self.implementation)
        return self.c_proj(y.reshape(x.shape)), (k, v)

    def decode(self, x: Float[Array, " C"], k_all: Array, v_all: Array, layer, pos: Int[Array, ""]):
        """One new token at ``pos`` against layer ``layer`` of the caches [L, S, H, D]. Only the new
        row is written, in place, so a step moves no more cache than attention reads."""
        q, k, v = self.qkv(x)
        k_all = jax.lax.dynamic_update_slice(k_all, k[None, :, None].astype(k_all.dtype), (layer, 0, pos, 0))
        v_all = jax.lax.dynamic_update_slice(v_all, v[None, :, None].astype(v_all.dtype), (layer, 0, pos, 0))
        k_cache, v_cache = k_all[layer].astype(q.dtype), v_all[layer].astype(q.dtype)  # [H, S, D]
        scores = jnp.einsum("hd,hsd->hs", q, k_cache, preferred_element_type=jnp.float32) / math.sqrt(q.shape[-1])
        scores = jnp.where(jnp.arange(k_cache.shape[1]) <= pos, scores, -jnp.inf)
        probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
        y = jnp.einsum("hs,hsd->hd", probs, v_cache)
        return self.c_proj(y.reshape(x.shape)), k_all, v_all


class Block(eqx.Module):
    ln_1: LayerNorm
    attn: CausalSelfAttention
    ln_2: LayerNorm
    mlp: MLP
    dropout: float = eqx.field(static=True)

    def __init__(self, cfg: GPTConfig, *, key: PRNGKeyArray):
        k1, k2 = jax.random.split(key)
        self.ln_1 = LayerNorm(cfg.n_embd, bias=cfg.bias, eps=cfg.layer_norm_eps)
        self.attn = CausalSelfAttention(cfg, key=k1)
        self.ln_2 = LayerNorm(cfg.n_embd, bias=cfg.bias, eps=cfg.layer_norm_eps)
        proj_std = residual_std(cfg.n_layer)
        self.mlp = MLP(cfg.n_embd, cfg.mlp_activation, bias=cfg.bias, std=0.02, proj_std=proj_std, key=k2)
        self.dropout = cfg.dropout

    def __call__(self, x: Float[Array, "T C"], dtype, key: PRNGKeyArray | None = None,
                 bias: Float[Array, "H T T"] | None = None):
        """Residual stream ``x`` stays float32; matmuls run in ``dtype``; ``bias`` is added to the
        attention scores. Returns (x, (k, v))."""
        k1, k2 = jax.random.split(key) if key is not None else (None, None)
        a, kv = self.attn(self.ln_1(x).astype(dtype), bias)
        x = x + _dropout(a, self.dropout, k1).astype(x.dtype)
        m = self.mlp(self.ln_2(x).astype(dtype))
        return x + _dropout(m, self.dropout, k2).astype(x.dtype), kv

    def decode(self, x: Float[Array, " C"], k_all, v_all, *, dtype, layer, pos):
        a, k_all, v_all = self.attn.decode(self.ln_1(x).astype(dtype), k_all, v_all, layer, pos)
        x = x + a.astype(x.dtype)
        return x + self.mlp(self.ln_2(x).astype(dtype)).astype(x.dtype), k_all, v_all


def _over_layers(blocks: Block | tuple[Block, ...], body, carry, xs, n_layer: int, scan: bool):
    """Run ``body(block, carry, x) -> (carry, y)`` over stacked blocks, under lax.scan or unrolled;
    or over a tuple of blocks (``Transformer.unstacked``), unrolled."""
    if isinstance(blocks, tuple):
        ys = []
        for i, block in enumerate(blocks):
            carry, y = body(block, carry, jax.tree.map(lambda a: a[i], xs))
            ys.append(y)
        return carry, jax.tree.map(lambda *a: jnp.stack(a), *ys)
    params, static = eqx.partition(blocks, eqx.is_array)
    step = lambda c, p_x: body(eqx.combine(p_x[0], static), c, p_x[1])  # noqa: E731
    if scan:
        return jax.lax.scan(step, carry, (params, xs))
    ys = []
    for i in range(n_layer):
        carry, y = step(carry, jax.tree.map(lambda a: a[i], (params, xs)))
        ys.append(y)
    return carry, jax.tree.map(lambda *a: jnp.stack(a), *ys)


class Transformer(eqx.Module):
    """The stack of blocks (parameters stacked on a leading layer axis) and the final LayerNorm."""

    blocks: Block
    ln_f: LayerNorm
    config: GPTConfig = eqx.field(static=True)

    def __init__(self, cfg: GPTConfig, *, key: PRNGKeyArray):
        self.blocks = eqx.filter_vmap(lambda k: Block(cfg, key=k))(jax.random.split(key, cfg.n_layer))
        self.ln_f = LayerNorm(cfg.n_embd, bias=cfg.bias, eps=cfg.layer_norm_eps)
        self.config = cfg

    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None,
                 bias: Float[Array, "H T T"] | None = None, bias_layers: int = 0):
        """Hidden states after ``ln_f`` [T, C] and every layer's (k, v), each [n_layer, T, H, D].
        ``bias`` is added to the attention scores of the first ``bias_layers`` layers."""
        cfg = self.config
        keys = None if key is None else jax.random.split(key, cfg.n_layer)
        if bias is None or bias_layers <= 0:
            body = lambda block, h, k: block(h, cfg.dtype, k)  # noqa: E731
            x, kv = _over_layers(self.blocks, body, x.astype(jnp.float32), keys, cfg.n_layer, cfg.scan)
            return self.ln_f(x), kv

        def body(block, h, xs):
            k, layer = xs
            return block(h, cfg.dtype, k, jnp.where(layer < bias_layers, bias, 0.0).astype(jnp.float32))

        x, kv = _over_layers(self.blocks, body, x.astype(jnp.float32), (keys, jnp.arange(cfg.n_layer)),
                             cfg.n_layer, cfg.scan)
        return self.ln_f(x), kv

    def decode(self, x: Float[Array, " C"], cache: KVCache, pos: Int[Array, ""]):
        """One token's hidden state at ``pos``; the cache is updated in place layer by layer."""
        cfg = self.config

        def body(block, carry, layer):
            return block.decode(*carry, dtype=cfg.dtype, layer=layer, pos=pos), None

        carry = (x.astype(jnp.float32), cache.k, cache.v)
        (x, k, v), _ = _over_layers(self.blocks, body, carry, jnp.arange(cfg.n_layer), cfg.n_layer, cfg.scan)
        return self.ln_f(x), KVCache(k, v)

    def unstacked(self) -> "Transformer":
        """The same transformer with one Block per layer (a tuple) instead of stacked parameters.
        For decode loops: XLA on CPU copies a layer's weights out of the stacked arrays every time
        it slices them (each step of a while loop), which tripled a decode step's memory traffic;
        sliced once before the loop, each layer's matrices are read in place. A transformer that is
        already unstacked is returned as it is."""
        if isinstance(self.blocks, tuple):
            return self
        params, static = eqx.partition(self.blocks, eqx.is_array)

        def layer(a, i):  # outside a jit through numpy: no indexing program to compile per shape
            return a[i] if isinstance(a, jax.core.Tracer) else jax.device_put(np.asarray(a)[i])

        blocks = tuple(eqx.combine(jax.tree.map(lambda a: layer(a, i), params), static) for i in range(self.config.n_layer))
        return eqx.tree_at(lambda t: t.blocks, self, blocks)

    def empty_cache(self, max_len: int) -> KVCache:
        cfg = self.config
        shape = (cfg.n_layer, cfg.n_head, max_len, cfg.head_dim)
        return KVCache(jnp.zeros(shape, cfg.dtype), jnp.zeros(shape, cfg.dtype))

    def prompt_cache(self, kv: tuple[Array, Array], max_len: int) -> KVCache:
        """A cache of length ``max_len`` holding a prompt's keys and values (each [n_layer, T, H, D],
        as ``__call__`` returns them) at positions 0..T-1."""
        cache = self.empty_cache(max_len)
        k, v = (jnp.swapaxes(a, 1, 2).astype(cache.k.dtype) for a in kv)
        return KVCache(jax.lax.dynamic_update_slice(cache.k, k, (0, 0, 0, 0)),
                       jax.lax.dynamic_update_slice(cache.v, v, (0, 0, 0, 0)))


def check_tokens(tokens, cfg: GPTConfig, vocab_size: int | None = None, what: str = "token ids") -> None:
    """Boundary checks with one-line errors: length within block_size, ids within the vocabulary.
    Values are checked only when concrete (not while tracing)."""
    vocab_size = vocab_size or cfg.vocab_size
    if tokens.shape[-1] > cfg.block_size:
        raise UserError(f"sequence of {tokens.shape[-1]} tokens is longer than block_size {cfg.block_size}")
    if not isinstance(tokens, jax.core.Tracer) and tokens.size:
        lo, hi = int(jnp.min(tokens)), int(jnp.max(tokens))
        if lo < 0 or hi >= vocab_size:
            raise UserError(f"{what} must lie in [0, {vocab_size}); got {lo if lo < 0 else hi}")


class GPT(eqx.Module):
    """GPT-2: token + position embeddings, the transformer, a (tied) LM head."""

    wte: Float[Array, "V C"]
    wpe: Float[Array, "P C"]
    transformer: Transformer
    lm_head: Dense | None
    config: GPTConfig = eqx.field(static=True)

    def __init__(self, cfg: GPTConfig, *, key: PRNGKeyArray):
        k_wte, k_wpe, k_tr, k_head = jax.random.split(key, 4)
        self.wte = 0.02 * jax.random.normal(k_wte, (cfg.padded_vocab_size, cfg.n_embd), jnp.float32)
        self.wpe = 0.02 * jax.random.normal(k_wpe, (cfg.block_size, cfg.n_embd), jnp.float32)
        self.transformer = Transformer(cfg, key=k_tr)
        self.lm_head = None if cfg.tie_embeddings else Dense(cfg.n_embd, cfg.padded_vocab_size, bias=False, std=0.02, key=k_head)
        self.config = cfg

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(x.size for x in jax.tree.leaves(eqx.filter(self, eqx.is_array)))
        return n - self.wpe.size if non_embedding else n

    def logits(self, h: Float[Array, "... C"]) -> Float[Array, "... V"]:
        """LM head over the real vocabulary; matmul in the compute dtype, accumulated in float32."""
        dtype = self.config.dtype
        if self.lm_head is None:  # tied: the token embedding, read as [V, C]
            out = matmul(h.astype(dtype), self.wte, jnp.float32, transpose_w=True)
        else:
            out = matmul(h.astype(dtype), self.lm_head.weight, jnp.float32)
        return out[..., : self.config.vocab_size]

    def hidden(self, tokens: Int[Array, " T"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        return self.forward(tokens, key=key)[0]

    def forward(self, tokens: Int[Array, " T"], *, key: PRNGKeyArray | None = None):
        """(final-norm hidden states [T, C], per-layer (k, v)) for one sequence."""
        check_tokens(tokens, self.config)
        k_emb, k_tr = jax.random.split(key) if key is not None else (None, None)
        x = self.wte[tokens] + self.wpe[: tokens.shape[0]]
        return self.transformer(_dropout(x, self.config.dropout, k_emb), key=k_tr)

    def __call__(self, tokens: Int[Array, " T"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T V"]:
        return self.logits(self.hidden(tokens, key=key))

    # --- KV-cache decoding (see xtts_jax/inference/sampling.py for the loop) ---
    def prefill(self, tokens: Int[Array, " T"], max_len: int) -> tuple[Float[Array, "T V"], KVCache]:
        """Logits of a prompt and a cache of length ``max_len`` holding its keys and values."""
        h, kv = self.forward(tokens)
        return self.logits(h), self.transformer.prompt_cache(kv, max_len)

    def decode_step(self, cache: KVCache, token: Int[Array, ""], pos: Int[Array, ""]):
        """Feed ``token`` at position ``pos``; returns (cache, logits [V]) for the next position."""
        x = self.wte[token] + self.wpe[pos]
        h, cache = self.transformer.decode(x, cache, pos)
        return cache, self.logits(h)


# Logical axis names per parameter (path suffix -> names); stacked block parameters get "layers"
# in front. train/sharding.py maps these names onto mesh axes with one rule table.
_LOGICAL_AXES = {
    "wte": ("vocab", "embed"),
    "wpe": ("pos", "embed"),
    "lm_head.weight": ("embed", "vocab"),
    "c_attn.weight": ("embed", "heads"),
    "c_attn.bias": ("heads",),
    "attn.c_proj.weight": ("heads", "embed"),
    "c_fc.weight": ("embed", "mlp"),
    "c_gate.weight": ("embed", "mlp"),
    "c_fc.bias": ("mlp",),
    "c_gate.bias": ("mlp",),
    "mlp.c_proj.weight": ("mlp", "embed"),
    "c_proj.bias": ("embed",),
    "weight": ("embed",),  # LayerNorm
    "bias": ("embed",),
}


def path_name(path) -> str:
    return ".".join(str(getattr(p, "name", getattr(p, "key", getattr(p, "idx", p)))) for p in path)


def logical_axes(model: eqx.Module) -> eqx.Module:
    """A pytree shaped like ``model`` with a PartitionSpec of logical axis names at each array leaf."""

    def spec(path, leaf):
        if not eqx.is_array(leaf):
            return leaf
        name = path_name(path)
        for suffix, axes in _LOGICAL_AXES.items():
            if re.search(rf"(^|\.){re.escape(suffix)}$", name):
                axes = (("layers",) if ".blocks." in f".{name}" else ()) + axes
                if len(axes) == leaf.ndim:
                    return P(*axes)
        return P(*([None] * leaf.ndim))

    return jax.tree_util.tree_map_with_path(spec, model)
