"""The sampler's token distribution against Hugging Face's logits processors (repetition penalty,
temperature, top-k, top-p applied in generate's order), by drawing many tokens."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtts_jax.inference.sampling import SamplingConfig, sample_token

torch = pytest.importorskip("torch")
lp = pytest.importorskip("transformers.generation.logits_process")

V, DRAWS = 24, 40_000


def hf_probs(logits, seen_ids, cfg):
    scores = torch.tensor(logits[None], dtype=torch.float32)
    ids = torch.tensor([seen_ids])
    chain = []
    if cfg.repetition_penalty != 1.0:
        chain.append(lp.RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty))
    chain.append(lp.TemperatureLogitsWarper(cfg.temperature))
    if cfg.top_k:
        chain.append(lp.TopKLogitsWarper(cfg.top_k))
    if cfg.top_p < 1.0:
        chain.append(lp.TopPLogitsWarper(cfg.top_p))
    for proc in chain:
        scores = proc(ids, scores)
    return torch.softmax(scores, -1)[0].numpy()


@pytest.mark.parametrize("cfg", [
    SamplingConfig(temperature=0.7, repetition_penalty=3.0),
    SamplingConfig(temperature=1.3, top_k=6),
    SamplingConfig(temperature=0.9, top_p=0.6, repetition_penalty=1.5),
    SamplingConfig(temperature=0.75, top_k=10, top_p=0.85, repetition_penalty=10.0),  # XTTS's settings
], ids=["penalty", "top_k", "top_p", "xtts"])
def test_token_frequencies_match_transformers(cfg):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 0.8, V).astype(np.float32)
    # seen: the largest logit and two small negative ones, which the penalty pushes further down
    negative = np.flatnonzero(logits < 0)
    near_zero = negative[np.argsort(-logits[negative])][:2]
    seen_ids = [int(np.argmax(logits)), *map(int, near_zero), int(near_zero[0])]
    seen = np.zeros(V, bool)
    seen[seen_ids] = True
    draw = jax.jit(jax.vmap(lambda k: sample_token(k, jnp.asarray(logits), jnp.asarray(seen), cfg)))
    tokens = np.asarray(draw(jax.random.split(jax.random.key(0), DRAWS)))
    freq = np.bincount(tokens, minlength=V) / DRAWS
    want = hf_probs(logits, seen_ids, cfg)
    assert set(np.flatnonzero(freq)) <= set(np.flatnonzero(want > 0)), "a token outside the allowed set"
    np.testing.assert_allclose(freq, want, atol=0.012)
