"""Small building blocks shared by the transformer models: Dense, LayerNorm, the MLP variants.

``Dense`` keeps its weight as ``[in, out]`` (GPT-2's ``Conv1D`` layout), so Hugging Face GPT-2
tensors copy in without a transpose and logical axis names read in the order data flows.
"""

from __future__ import annotations

import math
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from xtts_jax.errors import UserError
from xtts_jax.models import cpu_kernels

# name -> elementwise activation. gelu_tanh is GPT-2's "gelu_new"; relu2 is Primer's squared ReLU.
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "relu2": lambda x: jnp.square(jax.nn.relu(x)),
    "silu": jax.nn.silu,
}
# Gated variants (Shazeer 2020, "GLU Variants Improve Transformer"): (act(x W) * (x V)) W2.
GATED = {"swiglu": "silu", "geglu": "gelu"}
MLP_ACTIVATIONS = tuple(ACTIVATIONS) + tuple(GATED)


def mlp_hidden_width(n_embd: int, activation: str) -> int:
    """Hidden width: 4*d for plain MLPs; for gated ones 8d/3, so three matrices hold as many
    parameters as the plain MLP's two (within 0.5%), rounded to the coarsest multiple of 64, 8 or 1
    that keeps that match."""
    if activation not in MLP_ACTIVATIONS:
        raise UserError(f"unknown mlp_activation {activation!r}; choose one of {', '.join(MLP_ACTIVATIONS)}")
    if activation not in GATED:
        return 4 * n_embd
    target = 8 * n_embd / 3
    for multiple in (64, 8, 1):
        width = max(multiple, multiple * round(target / multiple))
        if abs(width - target) / target <= 0.005:
            return width
    return round(target)


def compute_cast(x: Array, dtype) -> Array:
    return x if dtype is None else x.astype(dtype)


def matmul(x: Float[Array, "... d_in"], w: Float[Array, "d_in d_out"], out_dtype=None, transpose_w: bool = False
           ) -> Float[Array, "... d_out"]:
    """``x @ w`` (``x @ w.T`` with ``transpose_w``) in ``x``'s dtype, ``w`` cast to it; the result in
    ``out_dtype`` (``x``'s dtype when None; float32 gives float32 accumulation, as for logits).
    bfloat16 on XLA's CPU backend goes through ``cpu_kernels.bf16_matmul``; every other case is the
    plain product."""
    if cpu_kernels.applies(x.dtype):
        return cpu_kernels.bf16_matmul(x, w, out_dtype or x.dtype, transpose_w)
    w = w.T if transpose_w else w
    if out_dtype is None:
        return x @ w.astype(x.dtype)
    return jnp.matmul(x, w.astype(x.dtype), preferred_element_type=out_dtype)


class Dense(eqx.Module):
    """y = x W + b with W stored as [in, out]; computes in ``x``'s dtype, parameters stay fp32."""

    weight: Float[Array, "d_in d_out"]
    bias: Float[Array, " d_out"] | None

    def __init__(self, d_in: int, d_out: int, *, bias: bool, std: float, key: PRNGKeyArray):
        self.weight = std * jax.random.normal(key, (d_in, d_out), jnp.float32)
        self.bias = jnp.zeros((d_out,), jnp.float32) if bias else None

    def __call__(self, x: Float[Array, "... d_in"]) -> Float[Array, "... d_out"]:
        y = matmul(x, self.weight)
        return y if self.bias is None else y + self.bias.astype(x.dtype)


class LayerNorm(eqx.Module):
    """LayerNorm over the last axis, computed in fp32 whatever the input dtype."""

    weight: Float[Array, " d"]
    bias: Float[Array, " d"] | None
    eps: float = eqx.field(static=True)

    def __init__(self, d: int, *, bias: bool, eps: float = 1e-5):
        self.weight = jnp.ones((d,), jnp.float32)
        self.bias = jnp.zeros((d,), jnp.float32) if bias else None
        self.eps = eps

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps) * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.astype(x.dtype)


class MLP(eqx.Module):
    """Position-wise feed-forward: ``c_proj(act(c_fc x))``, or gated ``c_proj(act(c_fc x) * c_gate x)``."""

    c_fc: Dense
    c_gate: Dense | None
    c_proj: Dense
    activation: str = eqx.field(static=True)

    def __init__(self, n_embd: int, activation: str, *, bias: bool, std: float, proj_std: float, key: PRNGKeyArray):
        hidden = mlp_hidden_width(n_embd, activation)
        k_fc, k_gate, k_proj = jax.random.split(key, 3)
        self.activation = activation
        self.c_fc = Dense(n_embd, hidden, bias=bias, std=std, key=k_fc)
        self.c_gate = Dense(n_embd, hidden, bias=bias, std=std, key=k_gate) if activation in GATED else None
        self.c_proj = Dense(hidden, n_embd, bias=bias, std=proj_std, key=k_proj)

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        if self.c_gate is None:
            h = ACTIVATIONS[self.activation](self.c_fc(x))
        else:
            h = ACTIVATIONS[GATED[self.activation]](self.c_fc(x)) * self.c_gate(x)
        return self.c_proj(h)


def residual_std(n_layer: int, std: float = 0.02) -> float:
    """GPT-2's scaled init for projections that write into the residual stream: std / sqrt(2 n_layer)."""
    return std / math.sqrt(2 * n_layer)
