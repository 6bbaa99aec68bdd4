"""KV-cache sampler: cached decoding equals full recompute; filters never leak; stops per row."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtts_jax.errors import UserError
from xtts_jax.inference.sampling import SamplingConfig, generate
from xtts_jax.models.gpt import GPT
from xtts_jax.models.gpt_config import get_config

VOCAB = 97
PROMPTS = [[5, 17, 3, 88, 41, 9, 2], [60], [12, 12, 40, 7]]


def _model(scan):
    cfg = get_config("nano", vocab_size=VOCAB, block_size=48, scan_layers=scan)
    m = GPT(cfg, key=jax.random.key(1))
    # Sharper logits than the 0.02 init gives, so greedy choices are not decided by rounding.
    return jax.tree.map(lambda x: x * 4 if eqx.is_array(x) and x.ndim >= 2 else x, m)


@pytest.fixture(scope="module", params=[True, False], ids=["scan", "unrolled"])
def both_models(request):
    return _model(request.param)


@pytest.fixture(scope="module")
def model():
    return _model(True)


@eqx.filter_jit
def _padded_logits(model, tokens):
    return model(tokens)


def full_logits(model, seq):
    """Logits after ``seq`` by a full forward pass (padded to block_size, so one compile: causal)."""
    tokens = np.zeros(model.config.block_size, np.int32)
    tokens[: len(seq)] = seq
    return np.asarray(_padded_logits(model, jnp.asarray(tokens))[len(seq) - 1], np.float64)


def penalise(logits, seen, penalty):
    out = logits.copy()
    idx = list(seen)
    out[idx] = np.where(out[idx] > 0, out[idx] / penalty, out[idx] * penalty)
    return out


@pytest.mark.parametrize("penalty", [1.0, 1.7])
def test_greedy_cached_equals_full_recompute(both_models, penalty):
    model = both_models
    cfg = SamplingConfig(temperature=0.0, max_new_tokens=12, repetition_penalty=penalty)
    got = generate(model, PROMPTS, jax.random.key(0), cfg)
    for prompt, row in zip(PROMPTS, got):
        seq = list(prompt)
        for _ in range(cfg.max_new_tokens):
            seq.append(int(np.argmax(penalise(full_logits(model, seq), set(seq), penalty))))
        assert row == seq[len(prompt):]


def test_top_k_and_top_p_never_leave_the_allowed_set(model):
    for cfg in (SamplingConfig(temperature=2.0, top_k=4, max_new_tokens=10),
                SamplingConfig(temperature=2.0, top_p=0.3, max_new_tokens=10),
                SamplingConfig(temperature=2.0, top_k=20, top_p=0.5, max_new_tokens=10)):
        for seed in range(2):
            rows = generate(model, PROMPTS, jax.random.key(seed), cfg)
            for prompt, row in zip(PROMPTS, rows):
                seq = list(prompt)
                for token in row:
                    logits = full_logits(model, seq) / cfg.temperature
                    order = np.argsort(-logits)
                    allowed = order[: cfg.top_k] if cfg.top_k else order
                    probs = np.exp(logits[allowed] - logits[allowed].max())
                    probs /= probs.sum()
                    mass_before = np.cumsum(probs) - probs
                    allowed = set(allowed[mass_before < cfg.top_p - 1e-6].tolist())
                    assert token in allowed, (cfg, seq, token, allowed)
                    seq.append(token)


def test_same_key_same_tokens_other_key_other_tokens(model):
    cfg = SamplingConfig(temperature=1.0, max_new_tokens=16)
    a = generate(model, PROMPTS, jax.random.key(7), cfg)
    b = generate(model, PROMPTS, jax.random.key(7), cfg)
    c = generate(model, PROMPTS, jax.random.key(8), cfg)
    assert a == b
    assert a != c


def test_seen_tokens_are_penalised_from_the_first_step(model):
    """XTTS-v2's stand-in prompt makes its penalty cover some ids before any is generated: greedy
    steps must equal a numpy recompute that starts with those ids as seen."""
    prompt = PROMPTS[0]
    first = int(np.argmax(full_logits(model, prompt)))
    cfg = SamplingConfig(temperature=0.0, repetition_penalty=50.0, max_new_tokens=4, penalize_prompt=False,
                         seen_tokens=(first, 3))
    got = generate(model, [prompt], jax.random.key(0), cfg)[0]
    seq, seen = list(prompt), {first, 3}
    for _ in range(4):
        token = int(np.argmax(penalise(full_logits(model, seq), seen, 50.0)))
        seq.append(token)
        seen.add(token)
    assert got == seq[len(prompt):] and got[0] != first
    with pytest.raises(UserError, match="seen_tokens"):
        SamplingConfig(seen_tokens=(-1,))


def test_each_row_stops_on_its_own(model):
    free = generate(model, PROMPTS, jax.random.key(0), SamplingConfig(temperature=0.0, max_new_tokens=12))
    stop = free[0][3]  # row 0 emits this token at step 3
    cfg = SamplingConfig(temperature=0.0, max_new_tokens=12, stop_token=stop)
    stopped = generate(model, PROMPTS, jax.random.key(0), cfg)
    for row_free, row_stop in zip(free, stopped):
        cut = row_free.index(stop) if stop in row_free else len(row_free)
        assert row_stop == row_free[:cut]
    assert len(stopped[0]) == free[0].index(stop) <= 3


def test_batch_rows_match_single_rows(model):
    cfg = SamplingConfig(temperature=0.0, max_new_tokens=8)
    batched = generate(model, PROMPTS, jax.random.key(0), cfg)
    for prompt, row in zip(PROMPTS, batched):
        assert generate(model, [prompt], jax.random.key(0), cfg)[0] == row


def test_bad_requests_get_clear_errors(model):
    with pytest.raises(UserError, match="outside the vocabulary"):
        generate(model, [[1, VOCAB]], jax.random.key(0), SamplingConfig())
    with pytest.raises(UserError, match="exceeds the model's 48 positions"):
        generate(model, [[1] * 40], jax.random.key(0), SamplingConfig(max_new_tokens=9))
    # a prompt that fits only without bucketing still runs
    assert len(generate(model, [[1] * 40], jax.random.key(0), SamplingConfig(max_new_tokens=8))[0]) == 8
    with pytest.raises(UserError, match="top_p"):
        SamplingConfig(top_p=0.0)
    with pytest.raises(UserError, match="at least one token"):
        generate(model, [[]], jax.random.key(0), SamplingConfig())


def test_model_boundary_errors():
    cfg = get_config("nano", vocab_size=VOCAB, block_size=16)
    m = GPT(cfg, key=jax.random.key(0))
    with pytest.raises(UserError, match="longer than block_size 16"):
        m(jnp.zeros(17, jnp.int32))
    with pytest.raises(UserError, match=r"\[0, 97\); got 97"):
        m(jnp.array([1, 97]))
    with pytest.raises(UserError, match="unknown GPT config 'gpt5'"):
        get_config("gpt5")
    with pytest.raises(UserError, match="not divisible by n_head"):
        dataclasses.replace(cfg, n_embd=65)
