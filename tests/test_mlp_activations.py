"""The seven MLP variants: shapes, matched parameter counts, and numpy formulas for each activation."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtts_jax.models.gpt import GPT

from xtts_jax.models.gpt_config import get_config
from xtts_jax.models.layers import ACTIVATIONS, MLP, MLP_ACTIVATIONS, mlp_hidden_width
from xtts_jax.train.ablation import check_matched, param_counts
from xtts_jax.errors import UserError

N_EMBD = 96


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(x)


# Written from the definitions, independently of jax.nn.
NUMPY = {
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
    "relu": lambda x: np.maximum(x, 0),
    "relu2": lambda x: np.maximum(x, 0) ** 2,
    "silu": lambda x: x / (1 + np.exp(-x)),
}


def _np(a) -> np.ndarray:
    return np.asarray(a, np.float64)


def _mlp(activation: str, n_embd: int = N_EMBD, seed: int = 0) -> MLP:
    return MLP(n_embd, activation, bias=True, std=0.3, proj_std=0.3, key=jax.random.PRNGKey(seed))


def test_every_activation_is_covered():
    assert set(MLP_ACTIVATIONS) == set(NUMPY) | {"swiglu", "geglu"}


@pytest.mark.parametrize("name", sorted(NUMPY))
def test_elementwise_activation_matches_numpy(name):
    x = np.random.default_rng(1).normal(0, 2.5, size=(1000,)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(ACTIVATIONS[name](jnp.asarray(x))), NUMPY[name](_np(x)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MLP_ACTIVATIONS)
def test_mlp_matches_numpy_formula(name):
    """Plain: act(x W1 + b1) W2 + b2. Gated (Shazeer 2020): (act(x W + b) * (x V + c)) W2 + b2,
    with SwiGLU's act = silu (Swish with beta 1) and GEGLU's = exact (erf) GELU."""
    mlp = _mlp(name)
    x = np.random.default_rng(2).normal(size=(7, N_EMBD)).astype(np.float32)
    got = np.asarray(mlp(jnp.asarray(x)))
    fc = _np(x) @ _np(mlp.c_fc.weight) + _np(mlp.c_fc.bias)
    if name == "swiglu":
        h = (fc / (1 + np.exp(-fc))) * (_np(x) @ _np(mlp.c_gate.weight) + _np(mlp.c_gate.bias))
    elif name == "geglu":
        h = 0.5 * fc * (1 + _erf(fc / np.sqrt(2))) * (_np(x) @ _np(mlp.c_gate.weight) + _np(mlp.c_gate.bias))
    else:
        assert mlp.c_gate is None
        h = NUMPY[name](fc)
    want = h @ _np(mlp.c_proj.weight) + _np(mlp.c_proj.bias)
    assert got.shape == (7, N_EMBD)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())  # float32 sums


def test_gated_variants_use_different_nonlinearities():
    """Same weights, different gate activation: swiglu and geglu must not coincide."""
    x = jnp.asarray(np.random.default_rng(3).normal(size=(5, N_EMBD)), jnp.float32)
    assert not np.allclose(_mlp("swiglu")(x), _mlp("geglu")(x), atol=1e-4)


@pytest.mark.parametrize("n_embd", [64, 96, 128, 384, 768])
def test_hidden_width_matches_parameters(n_embd):
    widths = {a: mlp_hidden_width(n_embd, a) for a in MLP_ACTIVATIONS}
    assert all(widths[a] == 4 * n_embd for a in NUMPY)
    for gated in ("swiglu", "geglu"):  # three matrices of 8d/3 ~ two of 4d
        assert abs(3 * widths[gated] - 2 * 4 * n_embd) / (8 * n_embd) <= 0.005


@pytest.mark.parametrize("name", MLP_ACTIVATIONS)
def test_gpt_shape_and_params_within_one_percent(name):
    cfg = get_config("nano", n_embd=96, n_head=2, block_size=16, vocab_size=200, mlp_activation=name)
    # Shapes only (eval_shape builds and runs nothing): the numbers are checked on the MLP above.
    logits = eqx.filter_eval_shape(lambda key, x: jax.vmap(GPT(cfg, key=key))(x), jax.random.PRNGKey(0),
                                   jax.ShapeDtypeStruct((2, 16), jnp.int32))
    assert logits.shape == (2, 16, 200)
    counts = param_counts(cfg)
    assert counts["total"] - 16 * 96 == cfg.num_params()  # the config's formula agrees (less wpe)
    base = param_counts(get_config("nano", n_embd=96, n_head=2, block_size=16, vocab_size=200))
    for kind in ("total", "non_embedding"):
        assert abs(counts[kind] - base[kind]) / base[kind] <= 0.01


def test_check_matched_rejects_a_mismatch():
    check_matched({"a": {"total": 1000, "non_embedding": 500}, "b": {"total": 1009, "non_embedding": 504}})
    with pytest.raises(UserError, match="b has"):
        check_matched({"a": {"total": 1000, "non_embedding": 500}, "b": {"total": 1000, "non_embedding": 510}})
