"""cpu_kernels: the bfloat16 training products against autodiff of the plain formulas, and the form
of every product XLA compiles for a bfloat16 GPT step on CPU."""

import dataclasses
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtts_jax.models import cpu_kernels
from xtts_jax.models.gpt import GPT, blocked_causal_attention
from xtts_jax.models.gpt_config import get_config

BF16, F32 = jnp.bfloat16, jnp.float32


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def plain(x, w, transpose_w=False):
    """The reference: the same bfloat16 operands multiplied and differentiated in float32."""
    w = w.astype(BF16).astype(F32)
    return x.astype(F32) @ (w.T if transpose_w else w)


@pytest.mark.parametrize("transpose_w", [False, True])
def test_matmul_and_its_gradients_match_autodiff_under_vmap(transpose_w):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((3, 5, 2, 16)), BF16)  # batch 3, two extra leading axes
    w = jnp.asarray(rng.standard_normal((24, 16) if transpose_w else (16, 24)), F32)
    g = jnp.asarray(rng.standard_normal((3, 5, 2, 24)), F32)

    def loss(fn, x, w):  # mapped over the batch, as the trainer maps a model
        return jnp.sum(g * jax.vmap(lambda xe: fn(xe, w).astype(F32))(x))

    ours = lambda xe, w: cpu_kernels.bf16_matmul(xe, w, F32, transpose_w)  # noqa: E731
    ref = lambda xe, w: plain(xe, w, transpose_w)  # noqa: E731
    y = jax.vmap(lambda xe: ours(xe, w))(x)
    assert y.shape == (3, 5, 2, 24) and y.dtype == F32
    assert rel(jax.vmap(lambda xe: ref(xe, w))(x), y) < 1e-6
    (dx, dw), (rx, rw) = (jax.grad(lambda x, w: loss(fn, x, w), argnums=(0, 1))(x, w) for fn in (ours, ref))
    assert dx.dtype == BF16 and dw.dtype == F32 and dw.shape == w.shape
    # the cotangent is rounded to bfloat16 before the products (autodiff's bf16 step does the same)
    assert rel(rx, dx) < 1e-2 and rel(rw, dw) < 1e-2
    assert rel(rw, dw) > 0  # the bfloat16 path really ran


def test_per_example_gradients_and_mapped_weights_stay_per_example():
    # vmap outside grad (per-example gradients) and a weight per example take the other batching paths
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((4, 6, 8)), BF16)
    w = jnp.asarray(rng.standard_normal((4, 8, 5)), F32)
    per_example = jax.vmap(jax.grad(lambda xe, we: jnp.sum(jnp.sin(cpu_kernels.bf16_matmul(xe, we, F32))), argnums=1))
    ref = jax.vmap(jax.grad(lambda xe, we: jnp.sum(jnp.sin(plain(xe, we))), argnums=1))
    ours, want = per_example(x, w), ref(x, w)
    assert ours.shape == (4, 8, 5) and rel(want, ours) < 1e-2
    assert rel(want[0], ours[1]) > 0.5  # not one shared sum


@pytest.mark.parametrize("dtype,tol", [(F32, 1e-5), (BF16, 2e-2)])
def test_attention_matches_blocked_attention_and_its_autodiff(dtype, tol):
    rng = np.random.default_rng(2)
    q, k, v = (jnp.asarray(rng.standard_normal((2, 40, 3, 8)), dtype) for _ in range(3))  # T 40: blocks of 16, 16, 8
    g = jnp.asarray(rng.standard_normal((2, 40, 3, 8)), F32)

    def loss(fn, q, k, v):
        return jnp.sum(g * jax.vmap(fn)(q, k, v).astype(F32))

    ours = lambda q, k, v: cpu_kernels.causal_attention(q, k, v, 16)  # noqa: E731
    ref = lambda q, k, v: blocked_causal_attention(q.astype(F32), k.astype(F32), v.astype(F32), block=16)  # noqa: E731
    assert rel(jax.vmap(ref)(q, k, v), jax.vmap(ours)(q, k, v)) < tol
    got = jax.grad(lambda *a: loss(ours, *a), argnums=(0, 1, 2))(q, k, v)
    want = jax.grad(lambda *a: loss(ref, *a), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(want, got):
        assert b.dtype == dtype and rel(a, b) < tol


def _dots(hlo: str) -> list[tuple[str, str]]:
    """(operand types, where it runs) of every dot in an optimized HLO module."""
    ynn = set(re.findall(r"__ynn_fusion.*?calls=(%[\w.\-]+)|calls=(%[\w.\-]+).*?__ynn_fusion", hlo))
    ynn = {a or b for a, b in ynn}
    found, current = [], None
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY )?(%[\w.\-]+) .*\{$", line)
        current = head.group(1) if head else current
        dot = re.search(r"dot\((%[\w.\-]+), (%[\w.\-]+)\)", line)
        if dot:
            types = "/".join(re.search(re.escape(op) + r" = (\w+)\[", hlo).group(1) for op in dot.groups())
            found.append((types, "ynn" if current in ynn else "xla"))
    return found


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU backend's kernels")
def test_a_bfloat16_gpt_step_runs_every_product_in_bfloat16_and_follows_float32():
    cfg = get_config("nano", compute_dtype="float32")
    model32 = GPT(cfg, key=jax.random.key(0))
    fresh = GPT(dataclasses.replace(cfg, compute_dtype="bfloat16"), key=jax.random.key(1))
    weights = lambda m: (m.wte, m.wpe, m.transformer.blocks, m.transformer.ln_f)  # noqa: E731
    model16 = eqx.tree_at(weights, fresh, weights(model32))
    tokens = jnp.arange(4 * 33).reshape(4, 33) % cfg.vocab_size

    def loss(model):
        logits = jax.vmap(model)(tokens[:, :-1])
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], -1).mean()

    def grads(model):
        params, static = eqx.partition(model, eqx.is_array)
        step = jax.jit(lambda p: eqx.filter_grad(loss)(eqx.combine(p, static)))
        return step.lower(params).compile().as_text(), jax.tree.leaves(eqx.filter(step(params), eqx.is_array))

    (_, g32), (hlo, g16) = grads(model32), grads(model16)
    dots = _dots(hlo)
    assert dots and all(types == "bf16/bf16" for types, _ in dots), sorted(set(dots))  # none upcast to float32
    if "__ynn_fusion" in hlo:  # a JAX whose CPU backend has YNNPACK (0.10): every product runs there
        assert all(where == "ynn" for _, where in dots), sorted(set(dots))
    assert all(a.dtype == b.dtype == F32 for a, b in zip(g32, g16))
    assert max(rel(a, b) for a, b in zip(g32, g16) if np.linalg.norm(a) > 0) < 0.05


def test_training_dtype_is_bfloat16_only_where_the_cpu_has_its_kernels(tmp_path, monkeypatch):
    with_amx, plain_cpu = tmp_path / "amx", tmp_path / "plain"
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    plain_cpu.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert cpu_kernels.cpu_has_bf16(str(with_amx)) and not cpu_kernels.cpu_has_bf16(str(plain_cpu))
    assert not cpu_kernels.cpu_has_bf16(str(tmp_path / "missing"))  # no /proc: no guess
    for has, want in ((True, "bfloat16"), (False, None)):
        monkeypatch.setattr(cpu_kernels, "cpu_has_bf16", lambda has=has: has)
        assert cpu_kernels.training_dtype() == want  # the tests run on JAX's CPU backend
        assert cpu_kernels.training_dtype("float32") == "float32"  # asked for: always that
