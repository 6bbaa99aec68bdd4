"""Import XTTS-v2's speaker encoder and compare embeddings with a PyTorch reference (max |diff| <= 1e-4).

The reference is written here from the published architecture (coqui TTS
``encoder/models/resnet.py`` ``ResNetSpeakerEncoder`` with ``base_encoder.py``'s front end, as
``xtts/hifigan_decoder.py`` builds it: 64 mels, log input, torch spectrogram, 16 kHz), in torch
only: torchaudio's ``MelSpectrogram`` is emulated with ``torch.stft`` and its HTK filter-bank
formula, under the buffer names torchaudio gives them, so the saved state dict has XTTS-v2's keys.
Weights are random, BatchNorm running statistics non-trivial; the checkpoint is saved as coqui
saves ``model.pth`` and read back through our importer.
"""

from __future__ import annotations

import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

from xtts_jax.audio.io import resample  # noqa: E402
from xtts_jax.convert.speaker_encoder import (PREFIX, infer_config, load_speaker_encoder,  # noqa: E402
                                              load_xtts_speaker_encoder, read_speaker_encoder_state,
                                              save_speaker_encoder)
from xtts_jax.errors import UserError  # noqa: E402
from xtts_jax.models.speaker_encoder import (SpeakerEncoderConfig, log_mel_spectrogram,  # noqa: E402
                                             mel_filter_bank, speaker_embedding)

SMALL = SpeakerEncoderConfig(layers=(2, 1, 1, 1), num_filters=(8, 16, 16, 32), proj_dim=64)
FULL = SpeakerEncoderConfig()  # XTTS-v2
LENGTHS = (9_000, 14_560)  # samples at 16 kHz: 57 and 92 frames (odd and even after the strides)


# ---------------------------------------------------------------------------- PyTorch reference

def htk_filter_bank(sr: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """torchaudio's melscale_fbanks(f_min 0, f_max sr / 2, norm None, HTK) in float32: [freqs, mels]."""
    to_mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)
    mels = torch.linspace(to_mel(0.0), to_mel(sr / 2), n_mels + 2)
    f_pts = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    freqs = torch.linspace(0, sr // 2, n_fft // 2 + 1)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - freqs[:, None]
    rising = -slopes[:, :-2] / f_diff[:-1]
    falling = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


class PreEmphasis(nn.Module):
    def __init__(self, coefficient):
        super().__init__()
        self.register_buffer("filter", torch.tensor([[[-coefficient, 1.0]]]))

    def forward(self, x):  # [N, T]; the missing previous sample comes from reflect padding
        return F.conv1d(F.pad(x[:, None], (1, 0), mode="reflect"), self.filter)[:, 0]


class Spectrogram(nn.Module):
    def __init__(self, n_fft, win_length, hop_length):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hamming_window(win_length))

    def forward(self, x):
        spec = torch.stft(x, self.n_fft, hop_length=self.hop_length, win_length=self.window.numel(),
                          window=self.window, center=True, pad_mode="reflect", normalized=False,
                          onesided=True, return_complex=True)
        return spec.abs().pow(2.0)


class MelScale(nn.Module):
    def __init__(self, sr, n_fft, n_mels):
        super().__init__()
        self.register_buffer("fb", htk_filter_bank(sr, n_fft, n_mels))

    def forward(self, spec):  # [N, freqs, T] -> [N, mels, T]
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


class MelSpectrogram(nn.Module):
    def __init__(self, c: SpeakerEncoderConfig):
        super().__init__()
        self.spectrogram = Spectrogram(c.n_fft, c.win_length, c.hop_length)
        self.mel_scale = MelScale(c.sample_rate, c.n_fft, c.n_mels)

    def forward(self, x):
        return self.mel_scale(self.spectrogram(x))


class SE(nn.Module):
    def __init__(self, channels, reduction):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x):
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class Block(nn.Module):
    def __init__(self, c_in, c_out, stride, reduction):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.se = SE(c_out, reduction)
        self.downsample = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x):
        y = self.se(self.bn2(self.conv2(self.bn1(F.relu(self.conv1(x))))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchSpeakerEncoder(nn.Module):
    """H/ASP ResNet speaker encoder with the torch front end and log input, as XTTS-v2's."""

    def __init__(self, c: SpeakerEncoderConfig):
        super().__init__()
        f = c.num_filters
        self.conv1 = nn.Conv2d(1, f[0], 3, padding=1)
        self.bn1 = nn.BatchNorm2d(f[0])
        c_in = f[0]
        for s in range(4):
            blocks = [Block(c_in if i == 0 else f[s], f[s], (1 if s == 0 else 2) if i == 0 else 1, c.se_reduction)
                      for i in range(c.layers[s])]
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
            c_in = f[s]
        self.instancenorm = nn.InstanceNorm1d(c.n_mels)
        self.torch_spec = nn.Sequential(PreEmphasis(c.preemphasis), MelSpectrogram(c))
        pooled = f[3] * (c.n_mels // 8)
        self.attention = nn.Sequential(nn.Conv1d(pooled, c.attention_channels, 1), nn.ReLU(),
                                       nn.BatchNorm1d(c.attention_channels),
                                       nn.Conv1d(c.attention_channels, pooled, 1), nn.Softmax(dim=2))
        self.fc = nn.Linear(2 * pooled, c.proj_dim)

    def log_mel(self, wave):  # [N, T] -> [N, mels, frames]
        return (self.torch_spec(wave) + 1e-6).log()

    def forward(self, wave, l2_norm=True):
        x = self.instancenorm(self.log_mel(wave))[:, None]
        x = self.bn1(F.relu(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        w = self.attention(x)
        mu = (x * w).sum(dim=2)
        sigma = ((x * x * w).sum(dim=2) - mu * mu).clamp(min=1e-5).sqrt()
        x = self.fc(torch.cat([mu, sigma], dim=1))
        return F.normalize(x, p=2, dim=1) if l2_norm else x


def random_reference(c: SpeakerEncoderConfig, seed: int) -> TorchSpeakerEncoder:
    """Random weights; BatchNorm statistics from two training batches, then perturbed."""
    torch.manual_seed(seed)
    model = TorchSpeakerEncoder(c)
    with torch.no_grad():
        bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape) / math.sqrt(m.weight[0].numel()))
                if m.bias is not None:
                    m.bias.copy_(0.05 * torch.randn(m.bias.shape))
        for bn in bns:
            bn.weight.copy_(1.0 + 0.3 * torch.randn(bn.weight.shape))
            bn.bias.copy_(0.1 * torch.randn(bn.bias.shape))
        for bn in bns:
            bn.momentum = None  # cumulative average over the batches below
        model.train()
        for _ in range(2):
            model(0.3 * torch.randn(3, 8000))
        for bn in bns:
            bn.running_mean.add_(0.1 * torch.randn(bn.running_mean.shape))
            bn.running_var.mul_(torch.empty(bn.running_var.shape).uniform_(0.7, 1.4))
    return model.eval()


def random_audio(n: int, seed: int) -> np.ndarray:
    """Noise under a slow envelope plus a few partials: speech-like dynamics, no silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    envelope = 0.2 + 0.8 * np.abs(np.sin(2 * np.pi * rng.uniform(1, 4) * t))
    tone = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in rng.uniform(100, 3000, 4))
    return (0.1 * envelope * (rng.standard_normal(n) + 0.5 * tone)).astype(np.float32)


def torch_embedding(ref, wave: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return ref(torch.from_numpy(wave)[None])[0].numpy()


def xtts_state(ref, key_prefix: str = "") -> dict:
    """An XTTS-v2-like state dict: the encoder among decoder and GPT tensors the importer must skip."""
    state = {key_prefix + PREFIX + k: v for k, v in ref.state_dict().items()}
    state[key_prefix + "gpt.text_embedding.weight"] = torch.randn(6, 4)
    state[key_prefix + "hifigan_decoder.waveform_decoder.conv_pre.weight"] = torch.randn(8, 4, 7)
    return state


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    ref = random_reference(SMALL, seed=0)
    path = tmp_path_factory.mktemp("se") / "model.pth"
    torch.save({"model": xtts_state(ref), "config": {"model": "xtts"}}, path)
    return ref, path, load_xtts_speaker_encoder(path)


# ----------------------------------------------------------------------------------------- tests

def test_front_end_matches_reference(small):
    ref, _, _ = small
    for n in LENGTHS:
        wave = random_audio(n, seed=n)
        with torch.no_grad():
            want = ref.log_mel(torch.from_numpy(wave)[None])[0].numpy()
        got = np.asarray(jax.jit(log_mel_spectrogram, static_argnums=1)(jnp.asarray(wave), SMALL))
        assert got.shape == want.shape == (SMALL.n_mels, 1 + n // 160)
        diff = np.abs(got - want)
        print(f"log-mel, {n} samples: max |diff| {diff.max():.2e}, mels 4 and up {diff[4:].max():.2e}")
        # The lowest mels (below about 200 Hz, which pre-emphasis all but removes) sit near log(1e-6),
        # where float32 FFT rounding, a 1e-7 fraction of the frame's energy, is magnified by the log.
        assert diff[4:].max() <= 1e-4 and diff.max() <= 5e-4


def test_filter_bank_equals_the_stored_one(small):
    ref, _, _ = small
    diff = np.abs(mel_filter_bank(SMALL).T - ref.torch_spec[1].mel_scale.fb.numpy()).max()
    print(f"mel filter bank: max |diff| {diff:.2e}")
    assert diff <= 1e-5


def test_import_matches_torch(small):
    ref, _, encoder = small
    assert encoder.config == SMALL  # inferred from the shapes
    for n in LENGTHS:
        wave = random_audio(n, seed=n + 1)
        want = torch_embedding(ref, wave)
        got = speaker_embedding(encoder, [wave], 16000)
        diff = np.abs(got - want).max()
        print(f"small config, {n} samples: max |diff| {diff:.2e}")
        assert got.shape == (SMALL.proj_dim,) and abs(np.linalg.norm(got) - 1) < 1e-5
        assert diff <= 1e-4


def test_full_xtts_v2_config_matches_torch():
    ref = random_reference(FULL, seed=1)
    state = xtts_state(ref, key_prefix="xtts.")  # a GPTTrainer checkpoint, bare state dict
    encoder = load_xtts_speaker_encoder(state, FULL)
    assert infer_config(read_speaker_encoder_state(state)) == FULL
    wave = random_audio(32_000, seed=7)
    start = time.perf_counter()
    want = torch_embedding(ref, wave)
    t_torch = time.perf_counter() - start
    start = time.perf_counter()
    got = speaker_embedding(encoder, [wave], 16000)
    t_jax = time.perf_counter() - start
    diff = np.abs(got - want).max()
    print(f"XTTS-v2 config, 2 s: max |diff| {diff:.2e} (torch {t_torch:.1f} s, jax with compile {t_jax:.1f} s)")
    assert got.shape == (512,) and diff <= 1e-4


def test_multi_reference_mean_and_resampling(small):
    _, _, encoder = small
    a, b = random_audio(LENGTHS[0], seed=3), random_audio(LENGTHS[1], seed=4)
    singles = [speaker_embedding(encoder, [w], 16000) for w in (a, b)]
    both = speaker_embedding(encoder, [a, b], 16000)
    np.testing.assert_allclose(both, (singles[0] + singles[1]) / 2, atol=1e-7)
    assert np.linalg.norm(both) < 0.999  # as XTTS-v2: the mean is not renormalised
    # another rate is resampled to 16 kHz first
    at_22k = resample(a, 16000, 22050)
    np.testing.assert_array_equal(speaker_embedding(encoder, [at_22k], 22050),
                                  speaker_embedding(encoder, [resample(at_22k, 22050, 16000)], 16000))
    with pytest.raises(UserError, match="at least one"):
        speaker_embedding(encoder, [], 16000)
    with pytest.raises(UserError, match="needs more than 256"):
        speaker_embedding(encoder, [a[:200]], 16000)


def test_safetensors_round_trip_is_exact(small, tmp_path):
    _, _, encoder = small
    path = tmp_path / "speaker_encoder.safetensors"
    save_speaker_encoder(encoder, path)
    loaded = load_speaker_encoder(path)
    assert loaded.config == encoder.config
    a, b = eqx.filter(encoder, eqx.is_array), eqx.filter(loaded, eqx.is_array)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(UserError, match="speaker encoder"):
        load_speaker_encoder(tmp_path / "missing.safetensors")


def test_bad_checkpoints_raise_user_errors(small):
    ref, _, _ = small
    good = xtts_state(ref)
    without = {k: v for k, v in good.items() if not k.startswith(PREFIX)}
    with pytest.raises(UserError, match="no hifigan_decoder.speaker_encoder"):
        load_xtts_speaker_encoder({"model": without})
    wrong = dict(good, **{PREFIX + "layer2.0.bn1.running_var": torch.ones(5)})
    with pytest.raises(UserError, match=r"layer2\.0\.bn1\.running_var.*shape"):
        load_xtts_speaker_encoder(wrong, SMALL)
    missing = {k: v for k, v in good.items() if k != PREFIX + "attention.3.bias"}
    with pytest.raises(UserError, match=r"lacks .*attention\.3\.bias"):
        load_xtts_speaker_encoder(missing)
    extra = dict(good, **{PREFIX + "layer1.2.conv1.weight": torch.zeros(8, 8, 3, 3)})
    with pytest.raises(UserError, match="does not use"):
        load_xtts_speaker_encoder(extra, SMALL)
    with pytest.raises(UserError, match="mel_scale.fb"):  # a config of other audio settings
        load_xtts_speaker_encoder(good, SpeakerEncoderConfig(layers=SMALL.layers, num_filters=SMALL.num_filters,
                                                             proj_dim=64, sample_rate=22050))
