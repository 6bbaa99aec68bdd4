"""The decode interface: both backends, every loader, and clear errors for bad input."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtts_jax.audio.mel import MelConfig, log_mel
from xtts_jax.errors import UserError
from xtts_jax.inference.vocoder import Vocoder, load_vocoder
from xtts_jax.models.hifigan import HifiganConfig, HifiganGenerator, fold_weight_norm
from xtts_jax.train.checkpoint import export_safetensors

MEL = HifiganConfig(in_channels=8, sample_rate=8000, upsample_rates=(4, 4), upsample_kernel_sizes=(8, 8),
                    upsample_initial_channel=16, resblock="2", resblock_kernel_sizes=(3,),
                    resblock_dilation_sizes=((1, 3),))
LATENT = dataclasses.replace(MEL, in_channels=12, sample_rate=24000, cond_channels=6, cond_in_each_up_layer=True,
                             input_interpolation=(4.0, 24000 / 22050))


def _generator(cfg: HifiganConfig, seed: int = 0) -> HifiganGenerator:
    """Structure from eval_shape, numpy values: avoids a jax.random compile per weight shape."""
    rng = np.random.default_rng(seed)
    shapes = eqx.filter_eval_shape(lambda: fold_weight_norm(HifiganGenerator(cfg, key=jax.random.PRNGKey(0))))
    return jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[1:]) or 1), jnp.float32),
        shapes)


def test_griffin_lim_backend_reconstructs_a_tone():
    cfg = MelConfig()
    t = np.arange(cfg.sample_rate // 2) / cfg.sample_rate
    wave = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    mel = log_mel(wave, cfg)
    voc = load_vocoder("griffinlim")
    out = voc.decode(mel, sample_rate=22050)
    assert voc.sample_rate == 22050 and out.dtype == np.float32
    assert abs(len(out) - len(wave)) < cfg.hop_length
    # phase is lost, the spectrum is not: the mel of the reconstruction is close to the input's
    err = np.abs(log_mel(out[: len(wave)], cfg)[:, 2:-2] - mel[:, 2:-2]).mean()
    assert err < 1.0, err
    assert np.abs(out).max() > 0.1


def test_hifigan_safetensors_round_trip(tmp_path):
    gen = _generator(MEL)
    path = tmp_path / "generator.safetensors"
    mel_cfg = MelConfig(sample_rate=8000, n_fft=64, hop_length=16, win_length=64, n_mels=8, fmax=4000)
    export_safetensors(gen, str(path), {"hifigan": MEL.to_dict(), "mel": dataclasses.asdict(mel_cfg)})
    voc = load_vocoder(path)
    assert (voc.backend, voc.features, voc.sample_rate, voc.channels) == ("hifigan", "mel", 8000, 8)
    mel = np.random.default_rng(0).standard_normal((8, 10)).astype(np.float32)
    out = voc.decode(mel, sample_rate=8000)
    want = eqx.filter_jit(lambda g, x: g(x))(gen, jnp.asarray(mel))
    assert out.shape == (10 * 16,)
    np.testing.assert_allclose(out, np.asarray(want), atol=1e-6)


def test_latent_decoder_with_speaker():
    gen = _generator(LATENT, seed=1)
    voc = Vocoder.hifigan(gen)
    assert (voc.features, voc.speaker_dim, voc.sample_rate) == ("gpt_latents", 6, 24000)
    latents = np.random.default_rng(1).standard_normal((7, 12)).astype(np.float32)
    speaker = np.random.default_rng(2).standard_normal(6).astype(np.float32)
    out = voc.decode(latents, speaker)
    # 7 latents -> 28 frames -> floor(28 * 24000 / 22050) = 30 frames of 16 samples
    assert out.shape == (30 * 16,)
    # XTTS-v2 keeps speaker embeddings as [1, 512, 1]; the same vector in that layout decodes the same
    np.testing.assert_array_equal(voc.decode(latents, speaker[None, :, None]), out)
    assert not np.allclose(voc.decode(latents, -speaker), out)  # the embedding is used


def test_bad_input_is_a_clear_error():
    gl = load_vocoder("griffinlim")
    mel = np.zeros((80, 5), np.float32)
    with pytest.raises(UserError, match=r"\[80 mels, frames\], got \(40, 5\)"):
        gl.decode(np.zeros((40, 5)))
    with pytest.raises(UserError, match="NaN or infinite"):
        gl.decode(np.where(np.arange(5) == 2, np.nan, mel))
    with pytest.raises(UserError, match="NaN or infinite"):
        gl.decode(np.where(np.arange(5) == 3, np.inf, mel))
    with pytest.raises(UserError, match="renders at 22050 Hz, but 24000 Hz"):
        gl.decode(mel, sample_rate=24000)
    with pytest.raises(UserError, match="zero frames"):
        gl.decode(np.zeros((80, 0)))
    with pytest.raises(UserError, match="takes no speaker embedding"):
        gl.decode(mel, np.zeros(512))

    voc = Vocoder.hifigan(_generator(LATENT))
    with pytest.raises(UserError, match=r"\[frames, 12\]"):
        voc.decode(np.zeros((12, 5)), np.zeros(6))
    with pytest.raises(UserError, match="needs a 6-d speaker embedding"):
        voc.decode(np.zeros((5, 12)))
    with pytest.raises(UserError, match="must have 6 values"):
        voc.decode(np.zeros((5, 12)), np.zeros(5))
    with pytest.raises(UserError, match="speaker embedding holds NaN"):
        voc.decode(np.zeros((5, 12)), np.full(6, np.nan))


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="neither a backend"):
        load_vocoder("wavenet")
    bad = tmp_path / "g.safetensors"
    export_safetensors(_generator(MEL), str(bad), {})
    with pytest.raises(UserError, match="no HiFiGAN config"):
        load_vocoder(bad)
    junk = tmp_path / "model.pth"
    junk.write_bytes(b"not a checkpoint")
    pytest.importorskip("torch")
    with pytest.raises(UserError, match="cannot read"):
        load_vocoder(junk, config=MEL)


def test_xtts_model_pth_is_recognised_by_its_keys(tmp_path):
    torch = pytest.importorskip("torch")
    from xtts_jax.train.checkpoint import flatten

    gen = _generator(LATENT, seed=3)
    # plain (weight-norm-removed) tensors under XTTS-v2's key names, beside other parts of model.pth
    state = {"hifigan_decoder.waveform_decoder." + k: torch.from_numpy(np.array(v)) for k, v in flatten(gen).items()}
    state["gpt.ln_f.weight"] = torch.ones(4)
    path = tmp_path / "model.pth"
    torch.save({"model": state}, path)
    voc = load_vocoder(path, config=LATENT)
    assert (voc.features, voc.speaker_dim, voc.sample_rate) == ("gpt_latents", 6, 24000)
    latents = np.random.default_rng(4).standard_normal((5, 12)).astype(np.float32)
    speaker = np.ones(6, np.float32)
    np.testing.assert_allclose(voc.decode(latents, speaker), Vocoder.hifigan(gen).decode(latents, speaker), atol=1e-6)
