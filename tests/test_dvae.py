"""DVAE: shapes, encode -> decode, codebook EMA math against numpy, dead-code restarts, training."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from xtts_jax.audio.mel import MelStats
from xtts_jax.errors import UserError
from xtts_jax.models.dvae import (
    DVAE, PRESETS, Codebook, DVAEConfig, codebook_stats, dvae_loss, ema_update, nearest_code, pad_frames,
    restart_dead_codes, update_codebook,
)

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def model():
    return DVAE(TINY, jax.random.key(0))


def test_xtts_v2_layout_one_token_per_1024_samples():
    cfg = PRESETS["xtts-v2"]
    assert cfg.mel.hop_length * cfg.downsample == 1024
    shapes = eqx.filter_eval_shape(DVAE, cfg, jax.random.key(0))
    assert shapes.encoder[0].weight.shape == (512, 80, 3) and shapes.encoder[1].weight.shape == (1024, 512, 3)
    assert shapes.encoder[-1].weight.shape == (512, 1024, 1)
    assert [type(layer).__name__ for layer in shapes.decoder] == ["Conv1d", "ResBlock", "ResBlock", "ResBlock",
                                                                 "Upsample", "Upsample", "Conv1d"]
    assert shapes.decoder[-1].weight.shape == (80, 512, 1)
    assert shapes.codebook.embed.shape == (1024, 512)


def test_shapes_and_encode_decode_agree_with_forward(model):
    mel = jax.random.normal(jax.random.key(1), (80, 48))
    recon, codes, z, q = eqx.filter_jit(model)(mel)
    assert recon.shape == (80, 48) and codes.shape == (12,) and z.shape == q.shape == (12, 16)
    assert codes.dtype == jnp.int32 and int(codes.max()) < TINY.num_tokens
    np.testing.assert_array_equal(eqx.filter_jit(DVAE.encode)(model, mel), codes)
    # straight-through: the forward value is exactly the decoding of the chosen codes
    np.testing.assert_allclose(eqx.filter_jit(DVAE.decode)(model, codes), recon, atol=1e-5)
    np.testing.assert_allclose(q, model.codebook.embed[codes])
    padded = pad_frames(mel[:, :45], TINY.downsample, -11.5)
    assert padded.shape == (80, 48) and float(padded[0, -1]) == -11.5


def test_nearest_code_matches_numpy_bruteforce():
    rng = np.random.default_rng(0)
    embed, z = rng.standard_normal((40, 8)).astype(np.float32), rng.standard_normal((100, 8)).astype(np.float32)
    expected = np.argmin(((z[:, None, :] - embed[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(nearest_code(jnp.asarray(embed), jnp.asarray(z)), expected)


def test_ema_update_matches_numpy_formula():
    rng = np.random.default_rng(1)
    k, d, n = 8, 4, 30
    cfg = DVAEConfig(num_tokens=k, codebook_dim=d, ema_decay=0.9, eps=1e-5)
    book = Codebook(jnp.asarray(rng.standard_normal((k, d)), jnp.float32),
                    jnp.asarray(rng.uniform(0.5, 3, k), jnp.float32),
                    jnp.asarray(rng.standard_normal((k, d)), jnp.float32))
    z = rng.standard_normal((n, d)).astype(np.float32)
    codes = rng.integers(0, k - 2, n)  # the last two codes stay unused
    mask = np.arange(n) < 25  # padding rows must not count
    new = ema_update(book, jnp.asarray(z), jnp.asarray(codes), jnp.asarray(mask), cfg)

    count = np.array([np.sum((codes == i) & mask) for i in range(k)], np.float64)
    sums = np.stack([z[(codes == i) & mask].sum(0) for i in range(k)])
    cluster = 0.9 * np.asarray(book.cluster_size, np.float64) + 0.1 * count
    embed_sum = 0.9 * np.asarray(book.embed_sum, np.float64) + 0.1 * sums
    total = cluster.sum()
    smoothed = (cluster + 1e-5) / (total + k * 1e-5) * total
    np.testing.assert_allclose(new.cluster_size, cluster, rtol=1e-5)
    np.testing.assert_allclose(new.embed_sum, embed_sum, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.embed, embed_sum / smoothed[:, None], rtol=1e-4, atol=1e-6)


def test_restart_moves_only_dead_codes_onto_valid_data():
    k, d = 6, 3
    book = Codebook(jnp.zeros((k, d)), jnp.array([5.0, 0.001, 2.0, 0.0, 1.0, 0.02]), jnp.ones((k, d)))
    z = jnp.arange(30.0).reshape(10, d) + 100
    mask = jnp.arange(10) < 4  # only rows 0..3 are real
    new, n = restart_dead_codes(book, z, mask, jax.random.key(3), threshold=0.03)
    dead = np.array([False, True, False, True, False, True])
    assert int(n) == 3
    np.testing.assert_array_equal(new.embed[~dead], 0.0)
    np.testing.assert_array_equal(new.cluster_size, np.where(dead, 1.0, book.cluster_size))
    valid_rows = {tuple(r) for r in np.asarray(z[:4])}
    for i in np.flatnonzero(dead):
        assert tuple(np.asarray(new.embed[i])) in valid_rows
        np.testing.assert_array_equal(new.embed_sum[i], new.embed[i])


def test_codebook_stats_perplexity_and_usage():
    codes = jnp.array([0, 0, 1, 2, 2, 2, 3, 3])
    mask = jnp.array([1, 1, 1, 1, 1, 1, 0, 0], bool)
    stats = codebook_stats(codes, mask, 8)
    p = np.array([2, 1, 3]) / 6
    np.testing.assert_allclose(stats["perplexity"], np.exp(-(p * np.log(p)).sum()), rtol=1e-5)
    assert float(stats["usage"]) == 3 / 8


def test_gradients_skip_the_codebook_and_reach_the_encoder(model):
    mels = jax.random.normal(jax.random.key(4), (2, 80, 32))
    mask = jnp.ones((2, 32), bool).at[1, 20:].set(False)
    grad_fn = eqx.filter_jit(eqx.filter_value_and_grad(dvae_loss, has_aux=True))
    (_, aux), grads = grad_fn(model, mels, mask)
    assert float(jnp.abs(grads.codebook.embed).max()) == 0.0
    assert float(jnp.abs(grads.encoder[0].weight).max()) > 0.0  # straight-through estimator
    np.testing.assert_array_equal(aux["token_mask"][1], np.arange(8) < 5)


def test_config_round_trips_with_mel_stats():
    cfg = DVAEConfig(num_tokens=16, mel_stats=MelStats((0.5,) * 80, (2.0,) * 80))
    assert DVAEConfig.from_dict(cfg.to_dict()) == cfg


def test_tiny_dvae_learns_and_keeps_codes_alive():
    """Forty steps on mels of tones and chirps: reconstruction improves and several codes are used."""
    from xtts_jax.audio.mel import log_mel

    t = np.arange(8192) / 22050
    waves = [np.sin(2 * np.pi * (f * t + 3000 * t**2 * (i % 2))) * (0.2 + 0.6 * (t * (3 + i) % 1))
             for i, f in enumerate((150, 300, 450, 700, 1000, 1500, 2200, 3000))]
    mels = jnp.asarray(np.stack([(log_mel(w.astype(np.float32))[:, :32] + 5) / 4 for w in waves]))
    mask = jnp.ones(mels.shape[::2], bool)
    model = DVAE(TINY, jax.random.key(5))
    opt = optax.adam(3e-3)
    opt_state = opt.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def step(model, opt_state, key):
        (loss, aux), grads = eqx.filter_value_and_grad(dvae_loss, has_aux=True)(model, mels, mask)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        model, stats = update_codebook(eqx.apply_updates(model, updates), aux, key)
        return model, opt_state, aux["mel_l1"], stats

    first = None
    for k in jax.random.split(jax.random.key(6), 40):
        model, opt_state, l1, stats = step(model, opt_state, k)
        if first is None:  # every code started dead: the first update placed them on data
            assert int(stats["restarted"]) >= TINY.num_tokens - 16  # all but the few codes used
            first = float(l1)
    assert float(l1) < 0.65 * first
    assert float(stats["usage"]) >= 4 / TINY.num_tokens and float(stats["perplexity"]) > 2.5


# --- the speaker-conditioned decoder ----------------------------------------------------------------

SPEAKER_TINY = DVAEConfig(**{**TINY.__dict__, "decoder_speaker": True})


def _features(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SPEAKER_TINY.speaker_dim).astype(np.float32)


def test_speaker_decoder_starts_as_the_plain_decoder_and_then_reads_the_reference(model):
    spk = DVAE(SPEAKER_TINY, jax.random.key(0))
    # same weights as the plain model (same key, the FiLM drawn after everything else), FiLM output at zero
    spk = eqx.tree_at(lambda m: (m.encoder, m.decoder, m.codebook), spk, (model.encoder, model.decoder, model.codebook))
    codes = jnp.asarray([1, 5, 0, 7, 7, 2], jnp.int32)
    plain = model.decode(codes)
    np.testing.assert_array_equal(spk.decode(codes, jnp.asarray(_features(0))), plain)
    np.testing.assert_array_equal(spk.decode(codes), plain)
    # a trained FiLM: different references, different mels; None is the all-zero reference
    film = spk.speaker_film
    out = eqx.tree_at(lambda f: f.out.weight, film, 0.1 * jax.random.normal(jax.random.key(3), film.out.weight.shape))
    spk = eqx.tree_at(lambda m: m.speaker_film, spk, out)
    a, b = spk.decode(codes, jnp.asarray(_features(0))), spk.decode(codes, jnp.asarray(_features(1)))
    assert a.shape == plain.shape and float(jnp.abs(a - b).max()) > 1e-3
    np.testing.assert_array_equal(spk.decode(codes), spk.decode(codes, jnp.zeros(SPEAKER_TINY.speaker_dim)))
    with pytest.raises(UserError, match="takes no speaker features"):
        model.decode(codes, jnp.asarray(_features(0)))


def test_speaker_decoder_modulates_each_stage_as_film(model):
    """Against a hand-written forward: scale and shift after the input conv and each upsampling,
    an offset of the output."""
    spk = DVAE(SPEAKER_TINY, jax.random.key(1))
    film = spk.speaker_film
    spk = eqx.tree_at(lambda m: m.speaker_film.out.weight, spk,
                      0.2 * jax.random.normal(jax.random.key(4), film.out.weight.shape))
    feats = jnp.asarray(_features(2))
    q = jax.random.normal(jax.random.key(5), (6, SPEAKER_TINY.codebook_dim))
    params = np.asarray(spk.speaker_film.out(jax.nn.gelu(spk.speaker_film.hidden(feats))))
    sizes = np.cumsum(spk.speaker_film.sizes)[:-1]
    pieces = np.split(params, sizes)
    dec, n_res = spk.decoder, SPEAKER_TINY.num_resnet_blocks

    def film_(h, p):
        scale, shift = np.split(p, 2)
        return h * (1 + scale[:, None]) + shift[:, None]

    h = film_(np.asarray(dec[0](q.T)), pieces[0])
    for layer in dec[1 : 1 + n_res]:
        h = np.asarray(layer(jnp.asarray(h)))
    for i, layer in enumerate(dec[1 + n_res : -1]):
        h = film_(np.asarray(jax.nn.relu(layer(jnp.asarray(h)))), pieces[1 + i])
    want = np.asarray(dec[-1](jnp.asarray(h))) + pieces[-1][:, None]
    np.testing.assert_allclose(spk.decode_latents(q, feats), want, rtol=1e-5, atol=1e-5)


def test_reference_features_are_speech_frame_mean_and_std():
    from xtts_jax.models.dvae import reference_features

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((8, 50)).astype(np.float32), rng.standard_normal((8, 30)).astype(np.float32)
    a[:, :10] -= 5  # ten quiet frames
    cfg = DVAEConfig(**{**SPEAKER_TINY.__dict__, "n_mels": 8, "mel": TINY.mel.__class__(n_mels=8)})
    got = reference_features([a, b], cfg, speech_quantile=0.2)
    keep_a = a[:, a.mean(0) >= np.quantile(a.mean(0), 0.2)]
    keep_b = b[:, b.mean(0) >= np.quantile(b.mean(0), 0.2)]
    frames = np.concatenate([keep_a, keep_b], 1)
    assert keep_a.shape[1] == 40 and (keep_a.mean(0) > -2).all()  # the quiet frames are out
    np.testing.assert_allclose(got, np.concatenate([frames.mean(1), frames.std(1)]), rtol=1e-5)
    with pytest.raises(UserError, match="must be"):
        reference_features([np.zeros((7, 5), np.float32)], cfg)


# --- steering a reference away from the nearest training voice ---------------------------------------

def test_steering_pushes_a_reference_from_the_nearest_training_voice():
    from xtts_jax.models.dvae import steer_reference, voice_means, with_reference_voices

    rng = np.random.default_rng(0)
    feats = rng.standard_normal((5, SPEAKER_TINY.speaker_dim)).astype(np.float32)
    speakers = ["b", "a", "b", "c", "b"]
    means = voice_means(feats, speakers)  # each voice once, names sorted: a, b, c
    np.testing.assert_allclose(means, np.stack([feats[1], feats[[0, 2, 4]].mean(0), feats[3]]), rtol=1e-6)
    dvae = with_reference_voices(DVAE(SPEAKER_TINY, jax.random.key(0)), means)
    assert dvae.cfg.reference_voices == 3
    np.testing.assert_array_equal(dvae.reference_voices, means)

    near_c = means[2] + 0.1 * rng.standard_normal(SPEAKER_TINY.speaker_dim).astype(np.float32)
    np.testing.assert_array_equal(steer_reference(near_c, dvae), near_c)  # the config's strength: 1, as read
    np.testing.assert_allclose(steer_reference(near_c, dvae, 2.5), means[2] + 2.5 * (near_c - means[2]), rtol=1e-5)
    np.testing.assert_allclose(steer_reference(means[1], dvae, 3.0), means[1])  # a training voice stays itself
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(UserError, match="positive number"):
            steer_reference(near_c, dvae, bad)
    with pytest.raises(UserError, match="holds no reference features"):  # a speaker decoder without the voices
        steer_reference(near_c, DVAE(SPEAKER_TINY, jax.random.key(0)), 2.0)
    with pytest.raises(UserError, match="reads no reference"):
        DVAEConfig(**{**TINY.__dict__, "reference_strength": 2.0})
    with pytest.raises(UserError, match="reference voices"):
        with_reference_voices(dvae, means[:, :7])


def test_reference_voices_and_strength_survive_saving_and_steer_rendering(tmp_path):
    from xtts_jax.inference.tts import render_dvae_codes
    from xtts_jax.inference.vocoder import Vocoder
    from xtts_jax.models.dvae import load_dvae, save_dvae, steer_reference, with_reference_voices

    dvae = DVAE(SPEAKER_TINY, jax.random.key(1))
    dvae = eqx.tree_at(lambda m: m.speaker_film.out.weight, dvae,
                       0.2 * jax.random.normal(jax.random.key(4), dvae.speaker_film.out.weight.shape))
    voices = np.stack([_features(5), _features(6)])
    dvae = with_reference_voices(dvae, voices)
    save_dvae(dvae, str(tmp_path / "full.safetensors"))
    save_dvae(dvae, str(tmp_path / "packed.safetensors"), decoder_only=True, dtype="float16", reference_strength=2.0)
    full, packed = load_dvae(str(tmp_path / "full.safetensors")), load_dvae(str(tmp_path / "packed.safetensors"))
    assert full.cfg.reference_strength == 1.0 and packed.cfg.reference_strength == 2.0 and packed.decoder_only
    np.testing.assert_array_equal(full.reference_voices, voices)
    np.testing.assert_allclose(packed.reference_voices, voices, atol=2e-3)  # float16 storage
    with pytest.raises(UserError, match="holds no reference features"):
        save_dvae(DVAE(SPEAKER_TINY, jax.random.key(1)), str(tmp_path / "x.safetensors"), reference_strength=2.0)

    codes, ref = [1, 5, 0, 7, 7, 2, 3], voices[1] + 0.5 * _features(7)
    vocoder = Vocoder.griffin_lim(SPEAKER_TINY.mel)
    steered = render_dvae_codes(full, vocoder, codes, steer_reference(ref, full, 2.0))
    np.testing.assert_allclose(render_dvae_codes(full, vocoder, codes, ref, reference_strength=2.0), steered, atol=1e-6)
    np.testing.assert_allclose(render_dvae_codes(full, vocoder, codes, ref), render_dvae_codes(full, vocoder, codes, ref,
                               reference_strength=1.0), atol=1e-6)
    assert np.abs(steered - render_dvae_codes(full, vocoder, codes, ref)).max() > 1e-4


def test_several_references_are_read_alone_and_averaged(tmp_path):
    """A voice's features from several recordings: each read alone, as the decoder read its training
    references, then averaged (not their frames pooled, which would add the spread between clips)."""
    import soundfile as sf

    from xtts_jax.audio.mel import log_mel
    from xtts_jax.inference.tts import dvae_reference_features
    from xtts_jax.models.dvae import reference_features

    dvae = DVAE(SPEAKER_TINY, jax.random.key(0))
    t = np.arange(11025) / 22050
    paths = []
    for i, f0 in enumerate((180, 420)):
        sf.write(tmp_path / f"{i}.wav", (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), 22050)
        paths.append(tmp_path / f"{i}.wav")
    alone = [reference_features([log_mel(sf.read(p, dtype="float32")[0], SPEAKER_TINY.mel)], SPEAKER_TINY) for p in paths]
    np.testing.assert_allclose(dvae_reference_features(dvae, paths), (alone[0] + alone[1]) / 2, rtol=1e-5, atol=1e-6)
    pooled = reference_features([log_mel(sf.read(p, dtype="float32")[0], SPEAKER_TINY.mel) for p in paths], SPEAKER_TINY)
    assert np.abs(pooled - (alone[0] + alone[1]) / 2).max() > 0.1  # the two readings do differ here
    with pytest.raises(UserError, match="no reference recording"):
        dvae_reference_features(dvae, [])
