"""TTS model: shapes, padding invariance, XTTS loss against numpy, cached decode == full recompute,
per-row stopping, GPT init."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtts_jax.inference.sampling import SamplingConfig, generate
from xtts_jax.inference.tts import random_tts
from xtts_jax.models.gpt import GPT
from xtts_jax.models.gpt_config import get_config as gpt_config
from xtts_jax.models.tts import get_config, init_from_gpt, logical_axes, tts_loss
from xtts_jax.models.tts_decoder import TTSDecoder

TEXTS = [[1, 7, 9, 4, 11, 2], [1, 30, 2]]  # start 1, stop 2
START, STOP = 32, 33


@pytest.fixture(scope="module")
def model():
    cfg = get_config("tiny", text_vocab_size=40, text_start_token=1, text_stop_token=2, conditioning=None)
    # numpy-drawn weights (fast on CPU), sharper than the 0.02 init so greedy choices are not
    # decided by rounding (as test_sampling); a non-zero bias so the padding test sees it
    m = random_tts(cfg, seed=3, std=0.08)
    return eqx.tree_at(lambda t: t.audio_head.bias, m, jnp.linspace(-0.5, 0.5, cfg.audio_vocab_size))


@pytest.fixture(scope="module")
def conds():
    return [np.asarray(jax.random.normal(jax.random.key(i), (k, 64)), np.float32) for i, k in ((5, 3), (6, 2))]


_forward = eqx.filter_jit(lambda m, c, t, a: m(c, t, a))
_padded = eqx.filter_jit(lambda m, c, t, a, tl, al: m(c, t, a, tl, al))


def test_shapes_and_padding_invariance(model, conds):
    text, audio = jnp.array(TEXTS[0]), jnp.array([START, 3, 4, 5, STOP])
    out = _forward(model, conds[0], text, audio)
    assert out.text_logits.shape == (6, 40) and out.audio_logits.shape == (5, 34) and out.latents.shape == (5, 64)
    # garbage in the padding of both segments changes nothing at the valid positions
    t_pad = jnp.concatenate([text, jnp.array([17, 5, 8])])
    a_pad = jnp.concatenate([audio, jnp.array([9, 9])])
    got = _padded(model, conds[0], t_pad, a_pad, 6, 5)
    np.testing.assert_allclose(got.text_logits[:6], out.text_logits, atol=2e-5)
    np.testing.assert_allclose(got.audio_logits[:5], out.audio_logits, atol=2e-5)
    np.testing.assert_allclose(got.latents[:5], out.latents, atol=2e-5)
    # conditioning matters; the audio positions restart at 0 (shifting audio into the text changes it)
    other = _forward(model, conds[0] * 0, text, audio)
    assert np.abs(np.asarray(other.audio_logits - out.audio_logits)).max() > 1e-3


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_loss_is_xtts_weighted_and_masks_padding(model, conds):
    text, audio = np.array(TEXTS[0]), np.array([START, 3, 4, 5, 6, STOP])
    t_pad, a_pad = np.concatenate([text, [3, 3]]), np.concatenate([audio, [0, 7, 7]])
    loss, m = eqx.filter_jit(tts_loss)(model, conds[0], jnp.array(t_pad), 6, jnp.array(a_pad), 6)
    out = _forward(model, conds[0], jnp.array(text), jnp.array(audio))
    lt, la = _log_softmax(out.text_logits), _log_softmax(out.audio_logits)
    text_ce = -np.mean(lt[np.arange(5), text[1:]])
    audio_ce = -np.mean(la[np.arange(5), audio[1:]])
    np.testing.assert_allclose(float(m["text_ce"]), text_ce, rtol=1e-5)
    np.testing.assert_allclose(float(m["audio_ce"]), audio_ce, rtol=1e-5)
    np.testing.assert_allclose(float(loss), 0.01 * text_ce + audio_ce, rtol=1e-5)


def _decoder(model, conds):
    table = jnp.asarray(np.concatenate(conds))
    dec = TTSDecoder(model, table)
    offsets = np.cumsum([0] + [len(c) for c in conds])
    prompts = [dec.prompt(range(offsets[i], offsets[i + 1]), t) for i, t in enumerate(TEXTS)]
    return dec, prompts


def _generate(dec, prompts, cfg):
    return generate(dec, prompts, jax.random.key(0), cfg, max_positions=128, vocab_size=dec.prompt_vocab_size)


def test_greedy_cached_decode_equals_full_recompute(model, conds):
    dec, prompts = _decoder(model, conds)
    rows = _generate(dec, prompts, SamplingConfig(temperature=0.0, max_new_tokens=10))
    assert [len(r) for r in rows] == [10, 10]
    for cond, text, row in zip(conds, TEXTS, rows):
        audio = np.zeros(11, np.int32)  # padded at the end: causal, one compile per row
        audio[0], audio[1:] = START, row
        logits = np.array(_forward(model, cond, jnp.array(text), jnp.array(audio)).audio_logits)
        logits[:, START] = -np.inf  # the decoder never draws the start token
        assert logits[:10].argmax(-1).tolist() == row


def test_rows_stop_on_their_own(model, conds):
    dec, prompts = _decoder(model, conds)
    free = _generate(dec, prompts, SamplingConfig(temperature=0.0, max_new_tokens=10))
    # a stop token that row 0 emits at step k, and row 1 not before step k + 2 (or never)
    k, stop = next((i, t) for i, t in enumerate(free[0])
                   if i >= 1 and t not in free[0][:i] and t not in free[1][:i + 2])
    cfg = SamplingConfig(temperature=0.0, max_new_tokens=10, stop_token=stop)
    batched = _generate(dec, prompts, cfg)
    assert batched[0] == free[0][:k]
    assert len(batched[1]) > k
    alone = [_generate(TTSDecoder(model, jnp.asarray(c)), [dec.prompt(range(len(c)), t)], cfg)[0]
             for c, t in zip(conds, TEXTS)]
    assert batched == alone


def test_init_from_gpt_copies_transformer_and_text_tables(model):
    cfg = gpt_config("nano", n_layer=2, n_head=4, n_embd=64, vocab_size=30, block_size=16)
    rng = np.random.default_rng(9)  # numpy-drawn weights: JAX's op-by-op init is slow on CPU
    gpt = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape, np.float32)) if isinstance(s, jax.ShapeDtypeStruct) else s,
                       eqx.filter_eval_shape(lambda: GPT(cfg, key=jax.random.key(0))),
                       is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))
    tts = init_from_gpt(model, gpt)
    np.testing.assert_array_equal(tts.text_embedding[:30], gpt.wte[:30])
    np.testing.assert_array_equal(tts.text_embedding[30:], model.text_embedding[30:])
    np.testing.assert_array_equal(tts.text_pos[:16], gpt.wpe)
    np.testing.assert_array_equal(tts.transformer.blocks.mlp.c_fc.weight, gpt.transformer.blocks.mlp.c_fc.weight)
    assert tts.transformer.config == model.transformer.config  # static settings stay the TTS's
    # a GPT trained on a compacted vocabulary: its row i is text id ids[i] (ids past the table dropped)
    ids = np.array([3, 7, 39] + list(range(100, 127)))
    mapped = init_from_gpt(model, gpt, ids)
    np.testing.assert_array_equal(mapped.text_embedding[ids[:3]], gpt.wte[:3])
    np.testing.assert_array_equal(mapped.text_embedding[0], model.text_embedding[0])
    specs = logical_axes(tts)
    assert specs.text_embedding == jax.sharding.PartitionSpec(None, "embed")
    assert specs.transformer.blocks.attn.c_attn.weight == jax.sharding.PartitionSpec("layers", "embed", "heads")


def test_recipe_batch_rows_unpack_to_the_same_loss():
    """recipes/train_tts.py packs (lengths, text, audio, reference mel) into float32 rows; its
    task's loss must equal the per-example XTTS loss averaged over the batch."""
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("train_tts", Path(__file__).parents[1] / "recipes" / "train_tts.py")
    recipe = importlib.util.module_from_spec(spec)
    sys.modules["train_tts"] = recipe  # dataclasses look their module up while the file runs
    spec.loader.exec_module(recipe)
    cfg = get_config("tiny", text_vocab_size=40, text_start_token=1, text_stop_token=2)
    model = random_tts(cfg, seed=5, std=0.05)
    rng = np.random.default_rng(0)
    frames = 12
    split = recipe.Split(text=[[1, 5, 6, 2], [1, 9, 2]], audio=[[START, 3, 4, 5, STOP], [START, 7, STOP]],
                         speaker=["a", "a"], ref_mel=rng.standard_normal((2, 80, frames)).astype(np.float32))
    batches = recipe.Batches(split, 4, seed=0, text_width=8, audio_width=8)
    task = recipe.TTSTask(cfg, 8, 8, frames)
    batch = batches(0)
    loss, metrics = eqx.filter_jit(task.loss)(model, jnp.asarray(batch), None)
    one = eqx.filter_jit(lambda m, mel, t, tl, a, al: tts_loss(m, m.conditioner(mel), t, tl, a, al)[0])
    want = []
    for row in batch:
        tl, al = int(row[0]), int(row[1])
        text, audio = row[2:10].astype(np.int32), row[10:18].astype(np.int32)
        ref = row[18:].reshape(80, frames)
        assert any(np.array_equal(text[:tl], t) for t in split.text) and tl <= 4
        assert not any(np.array_equal(ref, split.ref_mel[i]) for i in range(2) if split.text[i] == text[:tl].tolist())
        want.append(float(one(model, jnp.asarray(ref), jnp.asarray(text), tl, jnp.asarray(audio), al)))
    np.testing.assert_allclose(float(loss), np.mean(want), rtol=1e-5)


def test_recipe_length_buckets_pad_less_and_stay_pure():
    """Length buckets: a batch pads its text and its audio to its own bucket's longest; batches stay
    a pure function of (seed, step); every row unpacks to its own tokens from the batch's shape alone;
    and the padded slots shrink."""
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("train_tts", Path(__file__).parents[1] / "recipes" / "train_tts.py")
    recipe = importlib.util.module_from_spec(spec)
    sys.modules["train_tts"] = recipe
    spec.loader.exec_module(recipe)
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, 60, 64)
    audio = [[START, *rng.integers(0, 32, n).tolist(), STOP] for n in lengths]
    text = [[1, *rng.integers(3, 40, n // 2 + int(rng.integers(0, 4))).tolist(), 2] for n in lengths]
    frames = 4
    split = recipe.Split(text=text, audio=audio, speaker=["a", "b"] * 32,
                         ref_mel=rng.standard_normal((64, 80, frames)).astype(np.float32))
    round16 = lambda rows: -(-max(len(r) for r in rows) // 16) * 16  # noqa: E731
    text_width, widest = round16(text), round16(audio)
    cfg = get_config("tiny", text_vocab_size=40, text_start_token=1, text_stop_token=2)
    task = recipe.TTSTask(cfg, text_width, widest, frames)
    one = recipe.Batches(split, 8, seed=3, text_width=text_width, audio_width=widest)
    four = recipe.Batches(split, 8, seed=3, text_width=text_width, audio_width=widest, buckets=4, layouts=task.layouts)
    assert len(four.buckets) == 4 and len(task.layouts) == 4
    slots = {1: 0, 4: 0}
    for step in range(12):
        for n, b in ((1, one), (4, four)):
            batch = b(step)
            np.testing.assert_array_equal(batch, b(step))  # pure in (seed, step)
            text_len, audio_len, t, a, _, _ = task.unpack(jnp.asarray(batch))
            assert t.shape[1] % 16 == 0 and a.shape[1] % 16 == 0
            for row in range(len(batch)):  # each row's tokens are one utterance's, unpadded
                i = next(k for k in range(64) if audio[k] == np.asarray(a[row, :int(audio_len[row])]).tolist())
                assert np.asarray(t[row, :int(text_len[row])]).tolist() == text[i]
            slots[n] += (t.shape[1] + a.shape[1]) * len(batch)
            if n == 4:  # the bucket's widths are its longest rows rounded up to 16, not the global ones
                k = four.widths.index((t.shape[1], a.shape[1]))
                members = four.buckets[k]
                assert t.shape[1] == round16([text[i] for i in members])
                assert a.shape[1] == round16([audio[i] for i in members])
    assert min(w for _, w in four.widths) < widest and min(w for w, _ in four.widths) < text_width
    assert slots[4] < 0.8 * slots[1]


def test_wide_speaker_vectors_are_projected_and_cached_decode_still_equals_recompute():
    from xtts_jax.models.conditioning import PRESETS as COND
    from xtts_jax.models.tts import with_speaker_dim

    base = get_config("tiny", text_vocab_size=40, text_start_token=1, text_stop_token=2, conditioning=COND["tiny"])
    cfg = with_speaker_dim(base, 1024)
    model = random_tts(cfg, seed=4, std=0.08)
    assert cfg.speaker_width == 1024 and model.speaker_in.weight.shape == (1024, 64)
    mel = jnp.asarray(np.random.default_rng(0).standard_normal((80, 40)), jnp.float32)
    assert model.conditioner(mel).shape == (cfg.conditioning.num_latents, 1024)  # the interface is 1024-d
    conds = [np.asarray(jax.random.normal(jax.random.key(i), (k, 1024)), np.float32) for i, k in ((5, 3), (6, 1))]
    dec, prompts = _decoder(model, conds)
    rows = _generate(dec, prompts, SamplingConfig(temperature=0.0, max_new_tokens=8))
    for cond, text, row in zip(conds, TEXTS, rows):
        audio = np.zeros(9, np.int32)
        audio[0], audio[1:] = START, row
        logits = np.array(_forward(model, cond, jnp.array(text), jnp.array(audio)).audio_logits)
        logits[:, START] = -np.inf
        assert logits[:8].argmax(-1).tolist() == row
    # the projection is what the vectors go through: another projection, other tokens
    other = eqx.tree_at(lambda m: m.speaker_in.weight, model, -model.speaker_in.weight)
    assert _generate(TTSDecoder(other, dec.cond_table), prompts, SamplingConfig(temperature=0.0, max_new_tokens=8)) != rows
    # a model without it keeps XTTS-v2's layout: no projection, conditioner at n_embd
    assert random_tts(base).speaker_in is None and base.speaker_width == 64
    with pytest.raises(ValueError, match="1024-d"):
        dataclasses.replace(cfg, speaker_dim=0)


def test_phoneme_models_read_any_sentence_and_keep_their_text_table_on_gpt_init(model):
    from xtts_jax.inference.tts import text_tokens
    from xtts_jax.models.tts import with_phonemes
    from xtts_jax.text import phonemes

    cfg = with_phonemes(get_config("tiny", conditioning=None))
    assert cfg.text_vocab_size == phonemes.VOCAB_SIZE and cfg.text_start_token == cfg.text_stop_token == 0
    ids = text_tokens("Call Dr. Zorbly at 9:30, OK?", cfg)
    assert ids[0] == ids[-1] == 0 and all(0 < i < cfg.text_vocab_size for i in ids[1:-1])
    tts = random_tts(cfg, seed=2)
    gcfg = gpt_config("nano", n_layer=2, n_head=4, n_embd=64, vocab_size=200, block_size=16)
    gpt = eqx.filter_eval_shape(lambda: GPT(gcfg, key=jax.random.key(0)))
    gpt = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype) if isinstance(s, jax.ShapeDtypeStruct) else s, gpt,
                       is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))
    init = init_from_gpt(tts, gpt)
    np.testing.assert_array_equal(init.text_embedding, tts.text_embedding)  # GPT-2 rows mean nothing here
    np.testing.assert_array_equal(init.text_pos[:16], gpt.wpe)
