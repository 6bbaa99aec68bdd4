"""Text pointer (models/pointer.py): training targets, the advance loss against numpy, cached
decoding == the full forward with the pointer the decoder walked, every spoken token read in order,
and the stop token drawn exactly when the pointer passes the end."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtts_jax.inference.sampling import SamplingConfig, generate_padded, pad_prompts
from xtts_jax.inference.tts import random_tts
from xtts_jax.models import pointer
from xtts_jax.models import tts as tts_lib
from xtts_jax.models.alignment import spoken_tokens
from xtts_jax.models.tts_decoder import TTSDecoder
from xtts_jax.text import phonemes


@pytest.fixture(scope="module")
def model():
    cfg = dataclasses.replace(tts_lib.with_phonemes(tts_lib.get_config("tiny")), text_pointer=True, conditioning=None)
    m = random_tts(cfg, seed=2, std=0.08)
    # an advance head that moves on about every other step, whatever it reads
    return eqx.tree_at(lambda t: t.advance_head.bias, m, jnp.zeros(1))


def _text(cfg, sentence):
    return [cfg.text_start_token, *phonemes.encode(sentence), cfg.text_stop_token]


def test_pointer_from_frames_and_advance_targets():
    text = np.array([0, 10, 3, 11, 12, 5, 1])  # start, a, boundary, b, c, punctuation, stop
    spoken = np.zeros(20, bool)
    spoken[[10, 11, 12]] = True
    frames = np.array([0, 0, 1, 1, 1, 2])  # six codes: a a b b b c
    ptr = pointer.pointer_from_frames(text, spoken, frames)
    assert ptr.tolist() == [1, 1, 3, 3, 3, 4, 6, 6]  # + the last code's and the stop token's inputs
    assert np.asarray(pointer.advance_targets(jnp.asarray(ptr))).tolist() == [0, 1, 0, 0, 1, 1, 0, 0]


def test_advance_loss_matches_numpy_and_masks_padding():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(10).astype(np.float32)
    ptr = np.array([1, 1, 2, 2, 2, 4, 5, 5, 5, 5])
    got = float(pointer.advance_loss(jnp.asarray(logits), jnp.asarray(ptr), jnp.asarray(7)))
    y = np.array([0, 1, 0, 0, 1, 1], np.float64)  # positions 0..5 (audio_len 7: six have a next input)
    p = 1 / (1 + np.exp(-logits[:6].astype(np.float64)))
    np.testing.assert_allclose(got, np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))), rtol=1e-5)


def _sample(model, sentence, cond, max_new=60):
    cfg = model.config
    dec = TTSDecoder(model, jnp.asarray(cond))
    tokens, lengths = pad_prompts([dec.prompt(range(len(cond)), _text(cfg, sentence))])
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=max_new, stop_token=cfg.audio_stop_token)
    out = generate_padded(dec, jnp.asarray(tokens), jnp.asarray(lengths), jax.random.key(0), sampling,
                          tokens.shape[1] + max_new)
    return np.asarray(out.tokens)[0, : int(out.lengths[0])].tolist(), bool(out.stopped[0]), dec, tokens[0]


def _walk(model, dec, prompt, codes):
    """The text index each audio position read while decoding ``codes``, from the decoder's state."""
    logits, cache = dec.prefill(jnp.asarray(prompt), len(prompt) + len(codes) + 1)
    ks = [int(cache[2][2])]
    for i, c in enumerate(codes):
        cache, logits = dec.decode_step(cache, jnp.asarray(c), jnp.asarray(len(prompt) + i))
        ks.append(int(cache[2][2]))
    return ks


def test_cached_decode_with_the_pointer_equals_the_full_forward(model):
    cfg = model.config
    cond = np.asarray(jax.random.normal(jax.random.key(1), (3, cfg.speaker_width)), np.float32)
    codes, stopped, dec, prompt = _sample(model, "Cats sit on the warm mat.", cond)
    assert stopped and len(codes) > 2
    ks = _walk(model, dec, prompt, codes)
    text = jnp.asarray(_text(cfg, "Cats sit on the warm mat."))
    audio = jnp.asarray([cfg.audio_start_token, *codes])  # positions 0..n read ks[0..n]
    out = model(jnp.asarray(cond), text, audio, pointer=jnp.asarray(ks))
    logits = np.array(out.audio_logits)
    logits[:, cfg.audio_start_token] = -np.inf
    at_stop = np.array(ks) == len(text) - 1
    logits[~at_stop, cfg.audio_stop_token] = -np.inf  # the pointer's rule: the stop token only at the end
    assert at_stop.tolist() == [False] * len(codes) + [True]
    assert logits[:-1].argmax(-1).tolist() == codes
    # the advance decisions the decoder took are the full forward's advance head
    moved = np.diff(ks) != 0
    assert (np.asarray(out.advance_logits)[:-1] > 0).tolist() == moved.tolist() and moved.any() and not moved.all()


def test_every_spoken_token_is_read_in_order_and_stop_comes_at_the_end(model):
    cfg = model.config
    cond = np.asarray(jax.random.normal(jax.random.key(2), (3, cfg.speaker_width)), np.float32)
    sentence = "Hello, big world!"
    codes, stopped, dec, prompt = _sample(model, sentence, cond, max_new=120)
    assert stopped
    text = np.array(_text(cfg, sentence))
    ks = _walk(model, dec, prompt, codes)
    spoken_at = np.flatnonzero(spoken_tokens(cfg)[text]).tolist()
    visited = [k for i, k in enumerate(ks) if i == 0 or k != ks[i - 1]]
    assert visited == spoken_at + [len(text) - 1]  # each spoken token once, in order, then the stop
    assert ks[-1] == len(text) - 1 and cfg.audio_stop_token not in codes
