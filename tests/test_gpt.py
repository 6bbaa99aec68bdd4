"""GPT module: parameter counts, GPT-2 initialisation, scan == unrolled, dropout, dtypes, logical axes."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from xtts_jax.models.gpt import GPT, logical_axes

from xtts_jax.models.gpt_config import PRESETS, get_config


def with_weights(cfg, donor):
    """A GPT of config ``cfg`` (same shapes, other static choices) holding ``donor``'s weights."""
    fresh = GPT(cfg, key=jax.random.key(99))
    get = lambda m: (m.wte, m.wpe, m.transformer.blocks, m.transformer.ln_f)  # noqa: E731
    return eqx.tree_at(get, fresh, get(donor))


def test_gpt2_parameter_count_matches_the_published_model():
    # Hugging Face's gpt2 has 124,439,808 parameters; we pad the vocabulary 50257 -> 50304 rows.
    cfg = PRESETS["gpt2"]
    shapes = eqx.filter_eval_shape(GPT, cfg, key=jax.random.key(0))
    counted = sum(np.prod(x.shape) for x in jax.tree.leaves(shapes))
    assert counted == cfg.num_params(non_embedding=False) == 124_439_808 + 47 * 768
    assert cfg.flops_per_token(1024) == 6 * (counted - 1024 * 768) + 12 * 12 * 768 * 1024


@pytest.mark.parametrize("activation", ["gelu_tanh", "relu2", "swiglu", "geglu"])
@pytest.mark.parametrize("bias", [True, False])
def test_analytic_count_equals_the_module(activation, bias):
    cfg = get_config("nano", mlp_activation=activation, bias=bias, tie_embeddings=not bias)
    model = GPT(cfg, key=jax.random.key(0))
    assert model.num_params() == cfg.num_params()
    assert model.num_params(non_embedding=False) == cfg.num_params(non_embedding=False)


def test_gpt2_initialisation_statistics():
    cfg = get_config("tiny", n_layer=6, n_embd=256, n_head=4)
    model = GPT(cfg, key=jax.random.key(0))
    blocks = model.transformer.blocks
    assert abs(float(model.wte.std()) - 0.02) < 1e-3
    assert abs(float(blocks.attn.c_attn.weight.std()) - 0.02) < 1e-3
    scaled = 0.02 / np.sqrt(2 * cfg.n_layer)  # residual projections, as GPT-2
    for w in (blocks.attn.c_proj.weight, blocks.mlp.c_proj.weight):
        assert abs(float(w.std()) - scaled) < 0.05 * scaled
    assert float(jnp.abs(blocks.attn.c_attn.bias).max()) == 0.0
    assert float(jnp.abs(blocks.ln_1.weight - 1).max()) == 0.0
    # each layer is initialised differently
    assert not np.allclose(blocks.attn.c_attn.weight[0], blocks.attn.c_attn.weight[1])


def test_scan_and_unrolled_agree_and_vmap_matches_rows():
    cfg = get_config("nano", compute_dtype="float32", scan_layers=True)
    model = GPT(cfg, key=jax.random.key(3))
    unrolled = with_weights(dataclasses.replace(cfg, scan_layers=False), model)
    tokens = jax.random.randint(jax.random.key(0), (3, 20), 0, cfg.vocab_size)
    a = jax.vmap(model)(tokens)
    b = jax.vmap(unrolled)(tokens)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a[1], model(tokens[1]), atol=1e-5)


def test_dropout_only_with_a_key_and_gradients_flow():
    cfg = get_config("nano", dropout=0.2)
    model = GPT(cfg, key=jax.random.key(0))
    tokens = jnp.arange(16)
    np.testing.assert_array_equal(model(tokens), model(tokens))
    assert not np.allclose(model(tokens, key=jax.random.key(1)), model(tokens))

    def loss(m):
        logits = m(tokens[:-1], key=jax.random.key(2))
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[1:, None], -1).mean()

    grads = eqx.filter_grad(loss)(model)
    norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(norms)) and sum(n > 0 for n in norms) == len(norms)


def test_bfloat16_compute_stays_close_to_float32():
    cfg = get_config("nano", compute_dtype="float32")
    model32 = GPT(cfg, key=jax.random.key(0))
    model16 = with_weights(dataclasses.replace(cfg, compute_dtype="bfloat16"), model32)
    tokens = jnp.arange(32) % cfg.vocab_size
    a, b = model32(tokens), model16(tokens)
    assert b.dtype == jnp.float32  # logits accumulate in float32
    assert float(jnp.abs(a - b).max()) < 0.05 * float(jnp.abs(a).max())
    assert float(jnp.abs(a - b).max()) > 0  # bf16 really ran


def test_logical_axes_name_every_dimension():
    model = GPT(get_config("nano", mlp_activation="swiglu", tie_embeddings=False), key=jax.random.key(0))
    specs = logical_axes(model)
    leaves = jax.tree.leaves(eqx.filter(model, eqx.is_array))
    spec_leaves = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, PartitionSpec))
    assert len(leaves) == len(spec_leaves)
    for leaf, spec in zip(leaves, spec_leaves):
        assert len(spec) == leaf.ndim
    assert specs.wte == PartitionSpec("vocab", "embed")
    assert specs.transformer.blocks.mlp.c_gate.weight == PartitionSpec("layers", "embed", "mlp")
    assert specs.transformer.blocks.attn.c_proj.weight == PartitionSpec("layers", "heads", "embed")
    assert specs.lm_head.weight == PartitionSpec("embed", "vocab")


@pytest.mark.parametrize("t, block", [(256, 64), (70, 32), (5, 64)])
def test_blocked_attention_equals_dot_product_attention_with_gradients(t, block):
    from xtts_jax.models.gpt import blocked_causal_attention

    q, k, v, g = jax.random.normal(jax.random.key(t), (4, t, 3, 16))
    reference = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")  # noqa: E731
    blocked = lambda q, k, v: blocked_causal_attention(q, k, v, block)  # noqa: E731
    y_ref, vjp_ref = jax.vjp(reference, q, k, v)
    y, vjp = jax.vjp(blocked, q, k, v)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    for a, b in zip(vjp(g), vjp_ref(g)):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_cpu_defaults_blocked_attention_and_unrolled_layers():
    cfg = get_config("nano")
    assert jax.default_backend() != "cpu" or (cfg.attention_impl, cfg.scan) == ("blocked", False)
    assert get_config("nano", attention="xla", scan_layers=True).attention_impl == "xla"
    assert get_config("nano", scan_layers="false").scan is False
