"""Conditioning encoder + perceiver resampler against a numpy forward; chunking of references."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtts_jax.audio.mel import MelConfig, log_mel
from xtts_jax.errors import UserError
from xtts_jax.models.conditioning import PRESETS, Conditioner, condition_from_chunks, reference_chunks

CFG = PRESETS["tiny"]


def _np_attend(q, k, v, heads):
    out = []
    for h in np.split(np.arange(q.shape[1]), heads):
        s = q[:, h] @ k[:, h].T / np.sqrt(len(h))
        p = np.exp(s - s.max(-1, keepdims=True))
        out.append((p / p.sum(-1, keepdims=True)) @ v[:, h])
    return np.concatenate(out, axis=1)


def _np_dense(layer, x):
    y = x @ np.asarray(layer.weight, np.float64)
    return y if layer.bias is None else y + np.asarray(layer.bias)


def _np_groupnorm(x, groups, weight, bias, eps=1e-5):
    c, t = x.shape
    g = x.reshape(groups, -1)
    g = (g - g.mean(1, keepdims=True)) / np.sqrt(g.var(1, keepdims=True) + eps)
    return g.reshape(c, t) * np.asarray(weight)[:, None] + np.asarray(bias)[:, None]


def numpy_conditioner(m: Conditioner, mel: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    h = _np_dense(m.encoder.init, mel.T.astype(np.float64)).T
    for b in m.encoder.blocks:
        hn = _np_groupnorm(h, CFG.num_groups, b.norm.weight, b.norm.bias)
        qkv = _np_dense(b.qkv, hn.T)
        # Tortoise's legacy layout: per head, D query then D key then D value channels
        qkv = qkv.reshape(len(qkv), CFG.n_head, 3, -1)
        q, k, v = (qkv[:, :, i].reshape(len(qkv), -1) for i in range(3))
        h = hn + _np_dense(b.proj_out, _np_attend(q, k, v, CFG.n_head)).T  # XTTS-v2: residual from the norm
    ctx, x = h.T, np.asarray(m.perceiver.latents, np.float64)
    for layer in m.perceiver.layers:
        k, v = np.split(_np_dense(layer.to_kv, np.concatenate([ctx, x])), 2, axis=1)
        x = x + _np_dense(layer.to_out, _np_attend(_np_dense(layer.to_q, x), k, v, CFG.perceiver_heads))
        a, gate = np.split(_np_dense(layer.ff_in, x), 2, axis=1)
        x = x + _np_dense(layer.ff_out, a * 0.5 * gate * (1 + erf(gate / np.sqrt(2))))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(x.shape[1]) * np.asarray(m.perceiver.norm_gamma)


@pytest.fixture(scope="module")
def conditioner():
    # numpy-drawn weights (JAX's op-by-op init is slow on CPU); non-zero output projections, so the
    # attention blocks are tested (their init is zero: each block starts as the identity)
    rng = np.random.default_rng(0)
    shapes = eqx.filter_eval_shape(lambda: Conditioner(CFG, key=jax.random.key(0)))
    return jax.tree.map(lambda s: jnp.asarray(0.15 * rng.standard_normal(s.shape, np.float32))
                        if isinstance(s, jax.ShapeDtypeStruct) else s, shapes)


def test_matches_numpy_forward_and_averages_chunks(conditioner):
    rng = np.random.default_rng(0)
    chunks = rng.normal(size=(2, CFG.n_mels, 24)).astype(np.float32)
    got = np.asarray(eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(conditioner, jnp.asarray(chunks)))
    assert got.shape == (2, CFG.num_latents, CFG.n_embd)
    for i in range(2):
        np.testing.assert_allclose(got[i], numpy_conditioner(conditioner, chunks[i]), atol=2e-4)
    mean = np.asarray(condition_from_chunks(conditioner, jnp.asarray(chunks)))
    np.testing.assert_allclose(mean, got.mean(0), atol=1e-5)


def test_reference_chunks():
    mel, sr = MelConfig(), 22050
    rng = np.random.default_rng(1)
    long, short = rng.normal(size=int(9.5 * sr)).astype(np.float32) * 0.1, rng.normal(size=sr).astype(np.float32)
    chunks = reference_chunks([long], CFG, mel)  # 9.5 s -> two whole 4 s chunks, the rest dropped
    assert chunks.shape == (2, 80, mel.n_frames(4 * sr))
    np.testing.assert_allclose(chunks[1], log_mel(long[4 * sr:8 * sr], mel), atol=1e-5)
    both = reference_chunks([long, short], CFG, mel)  # a 1 s reference: everything cut to 1 s pieces
    assert both.shape == (10, 80, mel.n_frames(sr))
    with pytest.raises(UserError, match="too short"):
        reference_chunks([short[:100]], CFG, mel)
