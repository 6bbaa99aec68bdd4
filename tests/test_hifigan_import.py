"""Import PyTorch HiFiGAN checkpoints and compare waveforms with the PyTorch model (max |diff| <= 1e-4).

The reference generator below is written from the published architecture (Kong et al. 2020, the
authors' jik876/hifi-gan ``models.py``; coqui TTS ``HifiganGenerator`` / ``HifiDecoder`` for the
XTTS-v2 speaker conditioning and latent interpolation), with random weights, saved the way the
original repos save it, and read back through our converter.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

from xtts_jax.convert.hifigan import (XTTS_PREFIX, load_hifigan_generator,  # noqa: E402
                                      load_xtts_hifigan_decoder)
from xtts_jax.errors import UserError  # noqa: E402
from xtts_jax.models.hifigan import HifiganConfig  # noqa: E402

TINY1 = HifiganConfig(in_channels=8, upsample_rates=(4, 2), upsample_kernel_sizes=(8, 4),
                      upsample_initial_channel=16, resblock="1", resblock_kernel_sizes=(3, 5),
                      resblock_dilation_sizes=((1, 3, 5), (1, 2, 3)))
TINY2 = HifiganConfig(in_channels=8, upsample_rates=(4, 4), upsample_kernel_sizes=(8, 8),
                      upsample_initial_channel=16, resblock="2", resblock_kernel_sizes=(3, 5),
                      resblock_dilation_sizes=((1, 2), (2, 6)))
TINY_XTTS = HifiganConfig(in_channels=12, sample_rate=24000, upsample_rates=(4, 2),
                          upsample_kernel_sizes=(8, 4), upsample_initial_channel=16,
                          resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)),
                          cond_channels=6, cond_in_each_up_layer=True, conv_pre_weight_norm=False,
                          conv_post_weight_norm=False, conv_post_bias=False,
                          input_interpolation=(1024 / 256, 24000 / 22050))


@jax.jit
def _generate(model, *inputs):
    # the model is an argument, not a closed-over constant, so both weight-norm formats share a compile
    return jax.vmap(model)(*inputs)


def _wn(module, fmt):
    if fmt is None:
        return module
    if fmt == "old":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return nn.utils.weight_norm(module)
    return nn.utils.parametrizations.weight_norm(module)


def _pad(k, d):
    return (k * d - d) // 2


class TorchResBlock(nn.Module):
    def __init__(self, kind, ch, k, dil, fmt):
        super().__init__()
        self.kind = kind
        conv = lambda d: _wn(nn.Conv1d(ch, ch, k, 1, dilation=d, padding=_pad(k, d)), fmt)
        if kind == "1":
            self.convs1 = nn.ModuleList([conv(d) for d in dil])
            self.convs2 = nn.ModuleList([conv(1) for _ in dil])
        else:
            self.convs = nn.ModuleList([conv(d) for d in dil])

    def forward(self, x):
        if self.kind == "1":
            for c1, c2 in zip(self.convs1, self.convs2):
                x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, 0.1)), 0.1))
        else:
            for c in self.convs:
                x = x + c(F.leaky_relu(x, 0.1))
        return x


class TorchGenerator(nn.Module):
    def __init__(self, h: HifiganConfig, fmt):
        super().__init__()
        ch = h.upsample_initial_channel
        self.conv_pre = _wn(nn.Conv1d(h.in_channels, ch, 7, 1, padding=3), fmt if h.conv_pre_weight_norm else None)
        self.ups = nn.ModuleList([
            _wn(nn.ConvTranspose1d(ch // 2 ** i, ch // 2 ** (i + 1), k, u, padding=(k - u) // 2), fmt)
            for i, (u, k) in enumerate(zip(h.upsample_rates, h.upsample_kernel_sizes))])
        self.resblocks = nn.ModuleList([
            TorchResBlock(h.resblock, ch // 2 ** (i + 1), k, d, fmt)
            for i in range(len(self.ups)) for k, d in zip(h.resblock_kernel_sizes, h.resblock_dilation_sizes)])
        last = ch // 2 ** len(self.ups)
        self.conv_post = _wn(nn.Conv1d(last, 1, 7, 1, padding=3, bias=h.conv_post_bias),
                             fmt if h.conv_post_weight_norm else None)
        if h.cond_channels:
            self.cond_layer = nn.Conv1d(h.cond_channels, ch, 1)
            self.conds = nn.ModuleList([nn.Conv1d(h.cond_channels, ch // 2 ** (i + 1), 1)
                                        for i in range(len(self.ups))])
        self.n = len(h.resblock_kernel_sizes)

    def forward(self, x, g=None):
        x = self.conv_pre(x)
        if g is not None:
            x = x + self.cond_layer(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, 0.1))
            if g is not None:
                x = x + self.conds[i](g)
            x = sum(self.resblocks[i * self.n + j](x) for j in range(self.n)) / self.n
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


class TorchXttsDecoder(nn.Module):
    """coqui TTS HifiDecoder's forward: latents [B, T, C] -> interpolate x4, x24000/22050 -> generator."""

    def __init__(self, h, fmt):
        super().__init__()
        self.waveform_decoder = TorchGenerator(h, fmt)

    def forward(self, latents, g):
        z = F.interpolate(latents.transpose(1, 2), scale_factor=[1024 / 256], mode="linear")
        z = F.interpolate(z, scale_factor=[24000 / 22050], mode="linear")
        return self.waveform_decoder(z, g=g)


def _randomise(model, seed):
    """Random weights; weight-norm gains set to ||v|| times a random factor, so folding is exercised."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            if not name.endswith(("weight_g", "original0")):
                scale = 1.0 / p[0].numel() ** 0.5 if p.ndim > 1 else 0.05  # biases small
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
        for name, g in params.items():
            if name.endswith(("weight_g", "original0")):
                v = params[name[:-1] + ("v" if name.endswith("g") else "1")]
                norm = v.flatten(1).norm(dim=1).reshape(g.shape)
                g.copy_(norm * (0.7 + 0.8 * torch.rand(g.shape, generator=gen)))
    return model.eval()


@pytest.mark.parametrize("config", [TINY1, TINY2], ids=["resblock1", "resblock2"])
@pytest.mark.parametrize("fmt", ["old", "new"])
def test_original_generator_import_matches_torch(tmp_path, config, fmt):
    ref = _randomise(TorchGenerator(config, fmt), seed=1)
    keys = ref.state_dict().keys()
    assert any(k.endswith("weight_g" if fmt == "old" else "original0") for k in keys)
    path = tmp_path / "g_00000001"
    torch.save({"generator": ref.state_dict()}, path)  # as jik876/hifi-gan's train.py

    model = load_hifigan_generator(path, config)
    mel = np.random.default_rng(0).standard_normal((2, config.in_channels, 13)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(mel))[:, 0].numpy()
    got = np.asarray(_generate(model, jnp.asarray(mel)))
    assert got.shape == want.shape == (2, 13 * config.hop_length)
    assert 0.05 < want.std() < 0.9  # not saturated by tanh, not vanishing: the comparison means something
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_xtts_decoder_import_matches_torch(tmp_path):
    ref = _randomise(TorchXttsDecoder(TINY_XTTS, "new"), seed=2)
    state = {"hifigan_decoder." + k: v for k, v in ref.state_dict().items()}
    state["gpt.text_embedding.weight"] = torch.zeros(3, 4)  # other parts of model.pth are ignored
    state["hifigan_decoder.speaker_encoder.fc.weight"] = torch.zeros(2, 2)
    assert XTTS_PREFIX + "cond_layer.weight" in state and XTTS_PREFIX + "conds.1.bias" in state
    path = tmp_path / "model.pth"
    torch.save({"model": state, "config": {}}, path)

    model = load_xtts_hifigan_decoder(path, TINY_XTTS)
    rng = np.random.default_rng(1)
    latents = rng.standard_normal((2, 9, TINY_XTTS.in_channels)).astype(np.float32)
    speaker = rng.standard_normal((2, TINY_XTTS.cond_channels)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(latents), torch.from_numpy(speaker)[:, :, None])[:, 0].numpy()
    got = np.asarray(_generate(model, jnp.asarray(latents).transpose(0, 2, 1), jnp.asarray(speaker)))
    # 9 latents -> 36 frames -> floor(36 * 24000 / 22050) = 39 frames -> 39 * hop samples
    assert got.shape == want.shape == (2, 39 * TINY_XTTS.hop_length)
    assert 0.05 < want.std() < 0.9
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_import_rejects_mismatched_config(tmp_path):
    ref = TorchGenerator(TINY1, "new")
    path = tmp_path / "g"
    torch.save({"generator": ref.state_dict()}, path)
    wider = HifiganConfig(**{**TINY1.to_dict(), "upsample_initial_channel": 32})
    with pytest.raises(UserError, match="shape"):
        load_hifigan_generator(path, wider)
    extra = tmp_path / "g_extra"
    torch.save({"generator": {**ref.state_dict(), "mpd.weight": torch.zeros(1)}}, extra)
    with pytest.raises(UserError, match="does not use"):
        load_hifigan_generator(extra, TINY1)
    with pytest.raises(UserError, match="does not exist"):
        load_hifigan_generator(tmp_path / "missing", TINY1)
    with pytest.raises(UserError, match="no config given"):
        load_hifigan_generator(path)


def test_original_config_json_beside_the_checkpoint(tmp_path):
    ref = _randomise(TorchGenerator(TINY1, "old"), seed=3)
    torch.save({"generator": ref.state_dict()}, tmp_path / "g_00100000")
    # the original repo's config_v1.json fields, plus training keys the importer ignores
    (tmp_path / "config.json").write_text(json.dumps({
        "resblock": "1", "num_mels": 8, "sampling_rate": 16000, "batch_size": 16, "learning_rate": 2e-4,
        "upsample_rates": [4, 2], "upsample_kernel_sizes": [8, 4], "upsample_initial_channel": 16,
        "resblock_kernel_sizes": [3, 5], "resblock_dilation_sizes": [[1, 3, 5], [1, 2, 3]]}))
    model = load_hifigan_generator(tmp_path / "g_00100000")
    assert model.config == dataclasses.replace(TINY1, sample_rate=16000)
    mel = np.random.default_rng(3).standard_normal((1, 8, 6)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(mel))[:, 0].numpy()
    np.testing.assert_allclose(np.asarray(_generate(model, jnp.asarray(mel))), want, atol=1e-4, rtol=0)
