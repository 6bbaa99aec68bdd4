"""HiFiGAN generator pieces, discriminators, losses and the GAN step on the shared trainer.

Convolutions, interpolation, pooling and both discriminators are compared with torch (the layers
the reference implementation uses); losses with numpy formulas; the GAN task runs a few steps
through :class:`xtts_jax.train.trainer.Trainer` on tiny models.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtts_jax.audio.mel import MelConfig
from xtts_jax.errors import UserError
from xtts_jax.models import hifigan_discriminators as disc
from xtts_jax.models.hifigan import (PRESETS, Conv1d, HifiganConfig, HifiganGenerator, fold_weight_norm,
                                     interpolate_linear, preset)

ROOT = Path(__file__).resolve().parents[1]
TINY = HifiganConfig(in_channels=8, upsample_rates=(4, 4), upsample_kernel_sizes=(8, 8),
                     upsample_initial_channel=16, resblock="2", resblock_kernel_sizes=(3,),
                     resblock_dilation_sizes=((1, 3),), sample_rate=8000)
TINY_MEL = MelConfig(sample_rate=8000, n_fft=64, hop_length=16, win_length=64, n_mels=8, fmax=4000)


def _recipe():
    spec = importlib.util.spec_from_file_location("train_hifigan", ROOT / "recipes" / "train_hifigan.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_hifigan", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["v1", "v2", "v3", "tiny"])
def test_mel_presets_render_hop_samples_per_frame(name):
    cfg = preset(name)
    out = eqx.filter_eval_shape(lambda: HifiganGenerator(cfg, key=jax.random.PRNGKey(0))(jnp.zeros((80, 7))))
    assert cfg.hop_length == 256 and out.shape == (7 * 256,)


def test_xtts_preset_reads_latents_and_speaker():
    cfg = preset("xtts-v2")
    out = eqx.filter_eval_shape(lambda: HifiganGenerator(cfg, key=jax.random.PRNGKey(0))(
        jnp.zeros((1024, 10)), jnp.zeros((512,))))
    # 10 latents -> 40 frames at 22,050 Hz -> floor(40 * 24000 / 22050) = 43 frames at 24 kHz
    assert out.shape == (43 * 256,) and cfg.sample_rate == 24000
    with pytest.raises(UserError, match="speaker embedding"):
        eqx.filter_eval_shape(lambda: HifiganGenerator(cfg, key=jax.random.PRNGKey(0))(jnp.zeros((1024, 3))))


def test_config_validation_and_round_trip():
    with pytest.raises(UserError, match="resblock"):
        HifiganConfig(resblock="3")
    with pytest.raises(UserError, match="same length"):
        HifiganConfig(upsample_rates=(8, 8))
    with pytest.raises(UserError, match="dilations"):
        HifiganConfig(resblock="2")  # V1's three dilations per block are type 1's
    with pytest.raises(UserError, match="unknown HiFiGAN preset"):
        preset("v4")
    for cfg in PRESETS.values():
        assert HifiganConfig.from_dict(__import__("json").loads(__import__("json").dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("kernel,stride,padding", [(16, 8, 4), (4, 2, 1), (7, 3, 2), (3, 1, 1)])
def test_transposed_conv_matches_torch(kernel, stride, padding):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((6, 11)).astype(np.float32)
    conv = _build(lambda key: Conv1d(6, 4, kernel, stride=stride, padding=padding, transposed=True, key=key))
    got = np.asarray(conv(jnp.asarray(x)))
    want = torch.nn.functional.conv_transpose1d(
        torch.from_numpy(x)[None], torch.from_numpy(np.array(conv.effective_weight())),
        torch.from_numpy(np.array(conv.bias)), stride=stride, padding=padding)[0].numpy()
    assert got.shape == want.shape == (4, (11 - 1) * stride - 2 * padding + kernel)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # channels last (the generator's layout on CPU): the polyphase product and overlap-add
    last = np.asarray(conv(jnp.asarray(x.T), channels_last=True))
    np.testing.assert_allclose(last.T, want, atol=1e-5)


@pytest.mark.parametrize("kernel,dilation,padding,groups", [(3, 1, 1, 1), (7, 3, 9, 1), (11, 5, 25, 1), (5, 1, 2, 2)])
def test_conv_channels_last_matches_torch(kernel, dilation, padding, groups):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((6, 40)).astype(np.float32)
    conv = _build(lambda key: Conv1d(6, 4, kernel, padding=padding, dilation=dilation, groups=groups, key=key))
    want = torch.nn.functional.conv1d(torch.from_numpy(x)[None], torch.from_numpy(np.array(conv.effective_weight())),
                                      torch.from_numpy(np.array(conv.bias)), padding=padding, dilation=dilation,
                                      groups=groups)[0].numpy()
    np.testing.assert_allclose(np.asarray(conv(jnp.asarray(x))), want, atol=1e-5)
    np.testing.assert_allclose(np.asarray(conv(jnp.asarray(x.T), channels_last=True)).T, want, atol=1e-5)


@pytest.mark.parametrize("length", [1, 5, 13])
@pytest.mark.parametrize("scale", [4.0, 24000 / 22050, 2.5])
def test_interpolate_matches_torch(length, scale):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(length).standard_normal((3, length)).astype(np.float32)
    want = torch.nn.functional.interpolate(torch.from_numpy(x)[None], scale_factor=[scale], mode="linear")[0]
    got = interpolate_linear(jnp.asarray(x), scale)
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(np.asarray(got), want.numpy(), atol=1e-6)


def _build(cls, *args, seed=0):
    """The module's structure with numpy random values: conv weights ~ N(0, 1/fan_in), gains near
    ||v||, small biases. Our init draws with jax.random, which on a busy 2-core CPU costs about a
    second of XLA compile per distinct shape; tests need structure and sensible values, not that."""
    rng = np.random.default_rng(seed)
    shapes = eqx.filter_eval_shape(lambda: cls(*args, key=jax.random.PRNGKey(0)))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    values = []
    for path, x in leaves:
        name = str(getattr(path[-1], "name", ""))
        if name == "weight":
            w = rng.standard_normal(x.shape) / np.sqrt(np.prod(x.shape[1:]))
        elif name == "gain":
            w = rng.uniform(0.5, 1.5, x.shape)
        else:
            w = 0.05 * rng.standard_normal(x.shape)
        values.append(jnp.asarray(w, jnp.float32))
    return jax.tree_util.tree_unflatten(treedef, values)


def test_fold_weight_norm_keeps_the_function():
    model = _build(HifiganGenerator, TINY)
    folded = fold_weight_norm(model)
    convs = [c for c in jax.tree_util.tree_leaves(folded, is_leaf=lambda c: isinstance(c, Conv1d))
             if isinstance(c, Conv1d)]
    assert convs and all(c.gain is None for c in convs)
    mel = jax.random.normal(jax.random.PRNGKey(2), (8, 9))
    run = eqx.filter_jit(lambda m, x: m(x))
    np.testing.assert_allclose(np.asarray(run(folded, mel)), np.asarray(run(model, mel)), atol=1e-6)


def test_generator_channels_last_equals_torch_layout():
    """The CPU default (channels last, polyphase upsampling) against torch's layout, the GPU path;
    with XTTS-v2's speaker conditioning and input interpolation at a small width."""
    cfg = HifiganConfig(in_channels=12, upsample_rates=(4, 2), upsample_kernel_sizes=(8, 5), upsample_initial_channel=16,
                        resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 3, 5), (1, 2, 3)), cond_channels=6,
                        cond_in_each_up_layer=True, input_interpolation=(2.0, 24000 / 22050))
    for config in (TINY, cfg):
        model = fold_weight_norm(_build(HifiganGenerator, config))
        x = jax.random.normal(jax.random.PRNGKey(3), (config.in_channels, 9))
        g = jax.random.normal(jax.random.PRNGKey(4), (6,)) if config.cond_channels else None
        run = eqx.filter_jit(lambda m, x, g, last: m(x, g, channels_last=last))
        a, b = np.asarray(run(model, x, g, True)), np.asarray(run(model, x, g, False))
        assert a.shape == b.shape and np.abs(b).max() > 1e-3
        np.testing.assert_allclose(a, b, atol=2e-6)


def _torch_discriminators(d: disc.HifiganDiscriminators):
    """The reference's layers (Conv2d with (k, 1) kernels, grouped Conv1d, AvgPool1d) with our weights."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = lambda a: torch.from_numpy(np.array(a))

    def period(p: disc.PeriodDiscriminator, x):
        b, n = x.shape
        if n % p.period:
            x = F.pad(x[:, None], (0, p.period - n % p.period), "reflect")[:, 0]
        x = x.reshape(b, 1, -1, p.period)
        fmaps = []
        for c in p.convs:
            w = t(c.effective_weight())[..., None]
            x = F.leaky_relu(F.conv2d(x, w, t(c.bias), stride=(c.stride, 1), padding=(c.padding, 0)), 0.1)
            fmaps.append(x)
        x = F.conv2d(x, t(p.conv_post.effective_weight())[..., None], t(p.conv_post.bias), padding=(1, 0))
        return torch.flatten(x, 1, -1), fmaps + [x]

    def scale(s: disc.ScaleDiscriminator, x):
        x, fmaps = x[:, None], []
        for c in s.convs + [s.conv_post]:
            w = c.effective_weight()
            w = disc.spectral_normalised(w) if s.spectral else w
            x = F.conv1d(x, t(w), t(c.bias), stride=c.stride, padding=c.padding, groups=c.groups)
            x = F.leaky_relu(x, 0.1) if c is not s.conv_post else x
            fmaps.append(x)
        return torch.flatten(x, 1, -1), fmaps

    def run(x):
        outs = [period(p, x) for p in d.periods]
        pool = torch.nn.AvgPool1d(4, 2, padding=2)
        for i, s in enumerate(d.scales):
            x = pool(x[:, None])[:, 0] if i else x
            outs.append(scale(s, x))
        return outs

    return run


def test_discriminators_match_torch_layers():
    torch = pytest.importorskip("torch")
    d = _build(disc.HifiganDiscriminators, disc.DiscriminatorConfig(periods=(3,), n_scales=2, width_divisor=32))
    wave = (0.5 * np.random.default_rng(0).standard_normal((2, 301))).astype(np.float32)
    outs, fmaps = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(d, jnp.asarray(wave))
    with torch.no_grad():
        ref = _torch_discriminators(d)(torch.from_numpy(wave))
    assert len(outs) == len(ref) == 3
    for o, f, (ro, rf) in zip(outs, fmaps, ref):
        np.testing.assert_allclose(np.asarray(o), ro.numpy(), atol=1e-5)
        for a, b in zip(f, rf):
            # ours: [batch, columns, C, T/p] for period discs; torch: [batch, C, T/p, columns]
            b = b.numpy()
            a = np.moveaxis(np.asarray(a), 1, -1) if b.ndim == 4 else np.asarray(a)
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_spectral_norm_and_pool():
    torch = pytest.importorskip("torch")
    w = jax.random.normal(jax.random.PRNGKey(0), (16, 4, 41))
    sigma = np.linalg.svd(np.asarray(w).reshape(16, -1), compute_uv=False)[0]
    ratio = float(jnp.linalg.norm(w) / jnp.linalg.norm(disc.spectral_normalised(w))) / sigma
    assert 0.95 < ratio <= 1.0 + 1e-5  # power iteration approaches sigma_max from below
    x = np.random.default_rng(0).standard_normal(37).astype(np.float32)
    want = torch.nn.AvgPool1d(4, 2, padding=2)(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(np.asarray(disc.avg_pool(jnp.asarray(x))), want, atol=1e-6)


def test_losses_match_formulas():
    rng = np.random.default_rng(0)
    real = [rng.standard_normal(5).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
    fake = [rng.standard_normal(5).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
    want_d = sum(np.mean((1 - r) ** 2) + np.mean(f ** 2) for r, f in zip(real, fake))
    np.testing.assert_allclose(disc.discriminator_loss(real, fake), want_d, rtol=1e-6)
    np.testing.assert_allclose(disc.generator_adversarial_loss(fake),
                               sum(np.mean((1 - f) ** 2) for f in fake), rtol=1e-6)
    fm_r = [[rng.standard_normal((2, 3)), rng.standard_normal(4)], [rng.standard_normal(6)]]
    fm_f = [[rng.standard_normal((2, 3)), rng.standard_normal(4)], [rng.standard_normal(6)]]
    want_fm = sum(np.mean(np.abs(a - b)) for ra, fa in zip(fm_r, fm_f) for a, b in zip(ra, fa))
    np.testing.assert_allclose(disc.feature_matching_loss(fm_r, fm_f), want_fm, rtol=1e-6)
    assert (disc.LAMBDA_FM, disc.LAMBDA_MEL) == (2.0, 45.0)


def test_wave_segments_are_pure_in_step():
    th = _recipe()
    waves = [np.arange(100, dtype=np.float32), np.arange(10, dtype=np.float32)]
    seg = th.WaveSegments(waves, batch_size=4, segment=32, seed=7)
    a, b = seg(3), seg(3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 32) and not np.array_equal(seg(4), a)
    for row in a:  # a contiguous piece of one utterance, zero-padded when it is short
        nz = row[row != 0]
        assert np.all(np.diff(nz) == 1)


def test_gan_training_through_the_shared_trainer(tmp_path):
    from xtts_jax.train.optim import TrainConfig
    from xtts_jax.train.trainer import Trainer

    th = _recipe()
    task = th.HifiganTask(TINY, disc.DiscriminatorConfig(periods=(2,), n_scales=1, width_divisor=64), TINY_MEL)
    t = np.arange(4000) / 8000
    waves = [(0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in (220, 330, 440)]
    cfg = TrainConfig(steps=4, batch_size=2, lr=1e-3, min_lr=1e-3, warmup_steps=0, weight_decay=0.01,
                      betas=(0.8, 0.99), grad_clip=0.0, eval_every=4, eval_steps=1, ckpt_every=0, log_every=1,
                      out_dir=str(tmp_path / "run"))
    trainer = Trainer(task, cfg, train_data=th.WaveSegments(waves, 2, 512, 0),
                      eval_data=th.WaveSegments(waves, 2, 512, 1))
    init = jax.tree_util.tree_leaves(trainer.init_state(jax.random.PRNGKey(cfg.seed))["params"])
    result = trainer.fit(show_progress=False)
    hist = result["history"]
    assert [h["step"] for h in hist] == [1, 2, 3, 4]
    for h in hist:
        assert all(math.isfinite(h[k]) for k in ("loss", "loss_d", "loss_fm", "loss_g_adv", "mel_l1"))
    # same real audio every step: the discriminator learns to tell it apart, step after step
    assert hist[-1]["loss_d"] < hist[0]["loss_d"]
    assert result["val_loss"] is not None and math.isfinite(result["val_loss"])
    final = jax.tree_util.tree_leaves(result["state"]["params"])
    changed = [not np.allclose(a, b) for a, b in zip(init, final)]
    assert sum(changed) > 0.9 * len(changed)  # generator and discriminator both updated
    assert result["state"]["opt_state"].keys() == {"generator", "discriminators"}
