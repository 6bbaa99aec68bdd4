"""Conditioning encoder + perceiver resampler against a numpy forward; chunking of references."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _mel_ref import torchaudio_mel

from xtts_jax.audio.mel import MelConfig, log_mel
from xtts_jax.errors import UserError
from xtts_jax.models.conditioning import (PRESETS, XTTS_MEL, Conditioner, condition_from_chunks, condition_from_mels,
                                          reference_mels)

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


def test_reference_chunks_whole():
    mel, sr = MelConfig(), 22050
    rng = np.random.default_rng(1)
    long, short = rng.normal(size=int(9.5 * sr)).astype(np.float32) * 0.1, rng.normal(size=sr).astype(np.float32)
    chunks = reference_mels([long], CFG)  # 9.5 s -> two whole 4 s chunks, the rest dropped
    assert len(chunks) == 2 and chunks[0].shape == (80, mel.n_frames(4 * sr))
    np.testing.assert_allclose(chunks[1], log_mel(long[4 * sr:8 * sr], mel), atol=1e-5)
    both = reference_mels([long, short], CFG)  # a 1 s reference: everything cut to 1 s pieces
    assert len(both) == 10 and {c.shape for c in both} == {(80, mel.n_frames(sr))}
    with pytest.raises(UserError, match="too short"):
        reference_mels([short[:100]], CFG)


XTTS_CFG = dataclasses.replace(CFG, mel=XTTS_MEL, chunking="xtts", chunk_seconds=4.0, max_seconds=12.0,
                               max_ref_seconds=5.0, mel_norms=tuple(np.linspace(2.0, 5.0, 80).tolist()))


def test_xtts_chunking_and_mel_match_a_torch_reference():
    """As XTTS-v2's get_conditioning_latents: references cut to max_ref_seconds and joined, the first
    max_seconds cut into 4 s chunks, a last piece >= 0.33 s kept, each mel divided by mel_stats."""
    torch = pytest.importorskip("torch")
    sr = 22050
    rng = np.random.default_rng(2)
    a = (0.1 * rng.standard_normal(int(7.0 * sr))).astype(np.float32)  # cut to 5 s
    b = (0.1 * rng.standard_normal(int(3.2 * sr))).astype(np.float32)
    got = reference_mels([a, b], XTTS_CFG)
    joined = np.concatenate([a[:5 * sr], b])  # 8.2 s: chunks 0-4, 4-8, and 0.2 s (< 0.33 s: skipped)
    assert [g.shape[1] for g in got] == [XTTS_MEL.n_frames(4 * sr)] * 2
    for i, g in enumerate(got):
        want = torchaudio_mel(joined[i * 4 * sr:(i + 1) * 4 * sr], torch).numpy() / np.asarray(XTTS_CFG.mel_norms)[:, None]
        np.testing.assert_allclose(g, want, atol=2e-4)
    c = (0.1 * rng.standard_normal(int(4.5 * sr))).astype(np.float32)  # 4 s + 0.5 s: the short piece stays
    assert [g.shape[1] for g in reference_mels([c], XTTS_CFG)] == [XTTS_MEL.n_frames(4 * sr), XTTS_MEL.n_frames(sr // 2)]
    with pytest.raises(UserError, match="0.33"):
        reference_mels([c[:int(0.2 * sr)]], XTTS_CFG)


def test_mean_over_chunks_of_different_lengths(conditioner):
    rng = np.random.default_rng(5)
    mels = [rng.normal(size=(CFG.n_mels, n)).astype(np.float32) for n in (24, 24, 11)]
    each = [np.asarray(condition_from_chunks(conditioner, jnp.asarray(m[None]))) for m in mels]
    np.testing.assert_allclose(condition_from_mels(conditioner, mels), np.mean(each, axis=0), atol=1e-5)


def test_config_round_trip_and_checks():
    from xtts_jax.models.conditioning import ConditioningConfig

    assert ConditioningConfig.from_dict(XTTS_CFG.to_dict()) == XTTS_CFG
    assert ConditioningConfig.from_dict(CFG.to_dict()) == CFG
    old = {k: v for k, v in CFG.to_dict().items() if k not in ("mel", "mel_norms", "chunking", "max_ref_seconds")}
    assert ConditioningConfig.from_dict(old).mel_config == MelConfig()  # checkpoints from before the mel field
    with pytest.raises(UserError, match="mel_norms"):
        dataclasses.replace(CFG, mel_norms=(1.0, 2.0))
    with pytest.raises(UserError, match="chunking"):
        dataclasses.replace(CFG, chunking="overlap")


def test_cpu_attention_equals_dot_product_attention_with_gradients():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from xtts_jax.models.conditioning import _attend

    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((t, 4 * 8)), jnp.float32) for t in (5, 7, 7))

    def reference(q, k, v):
        split = lambda t: t.reshape(t.shape[0], 4, -1)  # noqa: E731
        return jax.nn.dot_product_attention(split(q), split(k), split(v), implementation="xla").reshape(q.shape[0], -1)

    np.testing.assert_allclose(_attend(q, k, v, 4), reference(q, k, v), atol=1e-5)
    loss = lambda f: (lambda *a: jnp.sum(jnp.sin(f(*a))))  # noqa: E731
    got = jax.grad(loss(lambda *a: _attend(*a, 4)), argnums=(0, 1, 2))(q, k, v)
    want = jax.grad(loss(reference), argnums=(0, 1, 2))(q, k, v)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)
