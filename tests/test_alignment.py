"""The CTC alignment aid (models/alignment.py) against PyTorch's CTC loss, and its head's life in a checkpoint."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtts_jax.models import tts as tts_lib
from xtts_jax.models.alignment import next_phoneme_ctc, spoken_tokens
from xtts_jax.text import phonemes


def _model(ctc_head=True, seed=0):
    cfg = dataclasses.replace(tts_lib.with_phonemes(tts_lib.get_config("tiny")), ctc_head=ctc_head)
    return tts_lib.TTS(cfg, key=jax.random.key(seed))


def test_spoken_tokens_are_phonemes_and_letters():
    spoken = spoken_tokens(_model().config)
    for silent in (phonemes.STOP, phonemes.BOUNDARY, *phonemes.PUNCTUATION):
        assert not spoken[phonemes.ID[silent]]
    assert spoken[phonemes.ID["AH0"]] and spoken[phonemes.ID["NG"]] and spoken[phonemes.ID["<q>"]]
    assert spoken.sum() == phonemes.VOCAB_SIZE - 2 - len(phonemes.PUNCTUATION)


def test_next_phoneme_ctc_matches_torch():
    torch = pytest.importorskip("torch")
    model = _model()
    cfg = model.config
    ids = phonemes.encode("Can you, see it?")
    text = jnp.asarray([cfg.text_start_token, *ids, cfg.text_stop_token, 0, 0, 0])  # right-padded
    text_len = jnp.asarray(len(ids) + 2)
    latents = jax.random.normal(jax.random.key(1), (40, cfg.gpt.n_embd))
    audio_len = jnp.asarray(33)  # latents 0..31 predict codes; the rest is padding
    loss, feasible = next_phoneme_ctc(model, latents, text, text_len, audio_len)

    labels = [i for i in ids if spoken_tokens(cfg)[i]]
    assert 0 < len(labels) < len(ids)  # boundaries and punctuation dropped
    logits = np.asarray(model.head(latents[:32], model.ctc_head), np.float64)
    log_probs = torch.log_softmax(torch.tensor(logits), -1)[:, None]  # [T, 1, K]
    ref = torch.nn.functional.ctc_loss(log_probs, torch.tensor([labels]), torch.tensor([32]),
                                       torch.tensor([len(labels)]), blank=cfg.text_vocab_size, reduction="sum")
    assert bool(feasible)
    np.testing.assert_allclose(float(loss), ref.item() / len(labels), rtol=2e-5)

    # too few frames for the labels: scored 0, flagged infeasible
    short, ok = next_phoneme_ctc(model, latents, text, text_len, jnp.asarray(4))
    assert not bool(ok) and float(short) == 0.0


def test_tts_loss_adds_the_weighted_ctc_term():
    model = _model()
    cfg = model.config
    ids = phonemes.encode("A cat.")
    text = jnp.asarray([cfg.text_start_token, *ids, cfg.text_stop_token])
    audio = jnp.asarray([cfg.audio_start_token, *range(1, 13), cfg.audio_stop_token])
    cond = jnp.zeros((cfg.conditioning.num_latents, cfg.speaker_width))
    args = (cond, text, jnp.asarray(text.shape[0]), audio, jnp.asarray(audio.shape[0]))
    plain, m0 = tts_lib.tts_loss(model, *args)
    aided, m1 = tts_lib.tts_loss(model, *args, ctc_weight=0.5)
    assert "ctc" not in m0 and float(m1["ctc_feasible"]) == 1.0
    np.testing.assert_allclose(float(aided), float(plain) + 0.5 * float(m1["ctc"]), rtol=1e-6)
    # a model without the head ignores the weight
    bare, _ = tts_lib.tts_loss(_model(ctc_head=False), *args, ctc_weight=0.5)
    assert np.isfinite(float(bare))


def test_with_ctc_head_keeps_every_weight_and_survives_save_and_load(tmp_path):
    bare = _model(ctc_head=False, seed=3)
    aided = tts_lib.with_ctc_head(bare, jax.random.key(4))
    assert aided.config == dataclasses.replace(bare.config, ctc_head=True) and aided.ctc_head is not None
    kept = eqx.filter(eqx.tree_at(lambda m: m.ctc_head, aided, None, is_leaf=lambda x: x is None), eqx.is_array)
    for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(eqx.filter(bare, eqx.is_array))):
        np.testing.assert_array_equal(a, b)
    assert tts_lib.with_ctc_head(aided, jax.random.key(5)) is aided

    tts_lib.save_tts(aided, str(tmp_path / "a.safetensors"))
    back = tts_lib.load_tts(str(tmp_path / "a.safetensors"))
    np.testing.assert_array_equal(back.ctc_head.weight, aided.ctc_head.weight)
    from xtts_jax.weights import export_safetensors

    old = {k: v for k, v in bare.config.to_dict().items() if k != "ctc_head"}  # written before the field
    export_safetensors(bare, str(tmp_path / "b.safetensors"), {"tts": old})
    assert tts_lib.load_tts(str(tmp_path / "b.safetensors")).ctc_head is None
