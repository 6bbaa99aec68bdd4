"""The CTC alignment aid (models/alignment.py) against PyTorch's CTC loss, and its head's life in a checkpoint."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtts_jax.models import tts as tts_lib
from xtts_jax.models.alignment import ctc_forced_align, next_phoneme_ctc, spoken_tokens
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


def test_beta_binomial_prior_matches_scipy_and_stays_in_its_segments():
    from scipy.stats import betabinom

    from xtts_jax.models.alignment import attention_prior_bias, beta_binomial_log_prior

    text_len, audio_len = 7, 12
    logp = np.asarray(beta_binomial_log_prior(jnp.arange(audio_len), jnp.arange(text_len), jnp.asarray(text_len),
                                              jnp.asarray(audio_len), scale=1.0, floor=-1e9))
    for t in range(audio_len):
        ref = betabinom(text_len - 1, t + 1, audio_len - t).logpmf(np.arange(text_len))
        np.testing.assert_allclose(logp[t], ref - ref.max(), atol=1e-4)
    assert logp[0].argmax() == 0 and logp[-1].argmax() == text_len - 1  # the band runs corner to corner

    n_cond, total = 3, 3 + 9 + 14  # text padded to 9, audio to 14
    bias = np.asarray(attention_prior_bias(n_cond, total, jnp.asarray(text_len), jnp.asarray(audio_len), 0.5))[0]
    audio_rows = slice(n_cond + text_len, n_cond + text_len + audio_len)
    text_cols = slice(n_cond, n_cond + text_len)
    np.testing.assert_allclose(bias[audio_rows, text_cols], 0.5 * np.maximum(logp, -8.0), atol=1e-5)
    outside = bias.copy()
    outside[audio_rows, text_cols] = 0
    assert not outside.any()


def test_blocked_attention_bias_matches_the_xla_path():
    from xtts_jax.models.gpt import blocked_causal_attention

    ks = jax.random.split(jax.random.key(0), 4)
    q, k, v = (jax.random.normal(kk, (40, 2, 8)) for kk in ks[:3])
    bias = jax.random.normal(ks[3], (2, 40, 40))
    ref = jax.nn.dot_product_attention(q, k, v, bias=bias, is_causal=True, implementation="xla")
    np.testing.assert_allclose(blocked_causal_attention(q, k, v, block=16, bias=bias), ref, atol=1e-5)
    np.testing.assert_allclose(blocked_causal_attention(q, k, v, block=16, bias=bias[:1]),
                               jax.nn.dot_product_attention(q, k, v, bias=bias[:1], is_causal=True), atol=1e-5)


def test_prior_changes_only_the_first_layers_and_keeps_padding_invariance():
    model = _model(ctc_head=False)
    cfg = model.config
    ids = phonemes.encode("Zebras run.")
    text = jnp.asarray([cfg.text_start_token, *ids, cfg.text_stop_token])
    audio = jnp.asarray([cfg.audio_start_token, *range(3, 21), cfg.audio_stop_token])
    cond = jax.random.normal(jax.random.key(2), (cfg.conditioning.num_latents, cfg.speaker_width))
    plain = model(cond, text, audio).audio_logits
    guided = model(cond, text, audio, prior_weight=1.0, prior_layers=1).audio_logits
    assert not np.allclose(plain, guided, atol=1e-4)  # the prior acts
    np.testing.assert_array_equal(model(cond, text, audio, prior_weight=1.0, prior_layers=0).audio_logits, plain)
    # right-padded segments under the prior give the unpadded result (the prior follows the sorting)
    pad_text = jnp.concatenate([text, jnp.full(5, text[-1])])
    pad_audio = jnp.concatenate([audio, jnp.full(7, audio[-1])])
    padded = model(cond, pad_text, pad_audio, jnp.asarray(text.shape[0]), jnp.asarray(audio.shape[0]),
                   prior_weight=1.0, prior_layers=1).audio_logits
    np.testing.assert_allclose(padded[:audio.shape[0]], guided, atol=2e-5)


def _brute_force_ctc_path(log_probs, labels, blank):
    """The best frame-by-frame path that collapses to ``labels``, by trying every path."""
    import itertools

    best, best_seq = -np.inf, None
    for seq in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        collapsed = [s for i, s in enumerate(seq) if s != blank and (i == 0 or s != seq[i - 1])]
        score = log_probs[np.arange(len(seq)), seq].sum()
        if collapsed == list(labels) and score > best:
            best, best_seq = score, seq
    return best, best_seq


def test_ctc_forced_align_finds_the_best_path_by_brute_force():
    rng = np.random.default_rng(0)
    blank, checked = 3, 0
    for _ in range(40):
        frames = int(rng.integers(2, 7))
        labels = rng.integers(0, 3, int(rng.integers(1, 4)))  # repeats included: they need a blank between
        log_probs = np.log(rng.dirichlet(np.ones(4), frames))
        best, seq = _brute_force_ctc_path(log_probs, labels, blank)
        if seq is None:
            with pytest.raises(ValueError, match="cannot hold"):
                ctc_forced_align(log_probs, labels, blank)
            continue
        index, score = ctc_forced_align(log_probs, labels, blank)
        assert score == pytest.approx(best, abs=1e-9)
        # the brute-force path's segmentation: a label starts where a new non-blank symbol does
        expect, k = [], -1
        for i, s in enumerate(seq):
            k += s != blank and (i == 0 or s != seq[i - 1])
            expect.append(max(k, 0))
        assert index.tolist() == expect
        assert index[0] == 0 and index[-1] == len(labels) - 1 and set(np.diff(index)) <= {0, 1}
        checked += 1
    assert checked > 20


def test_ctc_forced_align_recovers_known_durations_of_a_long_sentence():
    # 60 labels with durations 1..4 frames, posteriors peaked on the true label (blank elsewhere noise)
    rng = np.random.default_rng(1)
    labels = np.cumsum(rng.integers(1, 5, 60)) % 40  # no label twice in a row: that would need a blank frame
    durations = rng.integers(1, 5, 60)
    truth = np.repeat(np.arange(60), durations)
    log_probs = np.log(np.full((len(truth), 41), 0.2 / 40))
    log_probs[np.arange(len(truth)), labels[truth]] = np.log(0.8)
    index, _ = ctc_forced_align(log_probs, labels, blank=40)
    assert index.tolist() == truth.tolist()
