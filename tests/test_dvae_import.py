"""XTTS-v2's DVAE (``dvae.pth``, Tortoise's DiscreteVAE) imported, against a PyTorch reference of
that architecture written here from its published source: same codes, same decoded mel, same
mel front end (``TorchMelSpectrogram`` / ``mel_stats.pth``)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from _mel_ref import torchaudio_mel  # noqa: E402

from xtts_jax.audio.mel import log_mel  # noqa: E402
from xtts_jax.convert.dvae import XTTS_DVAE_MEL, load_xtts_dvae, read_mel_norms  # noqa: E402
from xtts_jax.errors import UserError  # noqa: E402
from xtts_jax.models.dvae import dvae_mel, load_dvae, save_dvae  # noqa: E402

nn = torch.nn


class TorchResBlock(nn.Module):
    def __init__(self, chan):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(chan, chan, 3, padding=1), nn.ReLU(), nn.Conv1d(chan, chan, 3, padding=1),
                                 nn.ReLU(), nn.Conv1d(chan, chan, 1))

    def forward(self, x):
        return self.net(x) + x


class TorchUpsampledConv(nn.Module):
    def __init__(self, c_in, c_out, kernel, stride, padding):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=padding)

    def forward(self, x):
        return self.conv(nn.functional.interpolate(x, scale_factor=self.stride, mode="nearest"))


class TorchQuantize(nn.Module):
    def __init__(self, dim, n_embed):
        super().__init__()
        embed = torch.randn(dim, n_embed)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.zeros(n_embed))
        self.register_buffer("embed_avg", embed.clone())

    def forward(self, x):  # x [B, T, dim] -> codes [B, T]
        flat = x.reshape(-1, x.shape[-1])
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed + self.embed.pow(2).sum(0, keepdim=True)
        return (-dist).max(1)[1].view(*x.shape[:-1])


class TorchDiscreteVAE(nn.Module):
    """DiscreteVAE(positional_dims=1, use_transposed_convs=False, stride 2, ReLU), as XTTS-v2 builds it
    (there: channels 80, num_tokens 1024, codebook_dim 512, hidden_dim 512, 2 layers, 3 resnet blocks)."""

    def __init__(self, channels=80, num_tokens=32, codebook_dim=8, hidden_dim=16, num_layers=2,
                 num_resnet_blocks=2, kernel_size=3):
        super().__init__()
        enc_chans = [hidden_dim * 2**i for i in range(num_layers)]
        dec_chans = list(reversed(enc_chans))
        enc_chans = [channels, *enc_chans]
        dec_chans = [dec_chans[0], *dec_chans]
        pad = (kernel_size - 1) // 2
        enc, dec = [], []
        for (ei, eo), (di, do) in zip(zip(enc_chans[:-1], enc_chans[1:]), zip(dec_chans[:-1], dec_chans[1:])):
            enc.append(nn.Sequential(nn.Conv1d(ei, eo, kernel_size, stride=2, padding=pad), nn.ReLU()))
            dec.append(nn.Sequential(TorchUpsampledConv(di, do, kernel_size, stride=2, padding=pad), nn.ReLU()))
        inner = dec_chans[0]
        for _ in range(num_resnet_blocks):
            dec.insert(0, TorchResBlock(inner))
            enc.append(TorchResBlock(inner))
        dec.insert(0, nn.Conv1d(codebook_dim, inner, 1))
        enc.append(nn.Conv1d(inner, codebook_dim, 1))
        dec.append(nn.Conv1d(dec_chans[-1], channels, 1))
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)
        self.codebook = TorchQuantize(codebook_dim, num_tokens)

    def get_codebook_indices(self, mel):  # [B, channels, T] -> [B, T / 4]
        return self.codebook(self.encoder(mel).permute(0, 2, 1))

    def decode(self, codes):  # [B, T'] -> [B, channels, 4 T']
        return self.decoder(nn.functional.embedding(codes, self.codebook.embed.t()).permute(0, 2, 1))


def random_dvae(seed: int = 0, **sizes) -> TorchDiscreteVAE:
    torch.manual_seed(seed)
    ref = TorchDiscreteVAE(**sizes)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(0.1 * torch.randn_like(p))
        ref.codebook.cluster_size.copy_(torch.rand(ref.codebook.cluster_size.shape))
        # codes on encoder outputs (as training leaves them), so random mel uses many of them
        n = ref.codebook.embed.shape[1]
        z = ref.encoder(torch.randn(1, ref.decoder[-1].out_channels, 4 * n)).permute(0, 2, 1)[0]
        ref.codebook.embed.copy_((z + 0.01 * torch.randn_like(z)).t())
    return ref.eval()


MEL_NORMS = np.linspace(2.0, 6.0, 80, dtype=np.float32)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("dvae")
    ref = random_dvae()
    torch.save(ref.state_dict(), root / "dvae.pth")
    torch.save(torch.from_numpy(MEL_NORMS), root / "mel_stats.pth")
    model = load_xtts_dvae(root / "dvae.pth", read_mel_norms(root / "mel_stats.pth"))
    save_dvae(model, str(root / "dvae.safetensors"))
    return ref, load_dvae(str(root / "dvae.safetensors")), root


def test_codes_and_decoded_mel_equal_the_torch_dvae(imported):
    ref, model, _ = imported
    cfg = model.cfg
    assert (cfg.num_tokens, cfg.codebook_dim, cfg.hidden_dim, cfg.num_layers, cfg.num_resnet_blocks) == (32, 8, 16, 2, 2)
    np.testing.assert_array_equal(model.codebook.embed, ref.codebook.embed.t().numpy())
    np.testing.assert_array_equal(model.codebook.cluster_size, ref.codebook.cluster_size.numpy())
    mel = np.random.default_rng(0).standard_normal((80, 48)).astype(np.float32)
    with torch.no_grad():
        latents = ref.encoder(torch.from_numpy(mel)[None]).permute(0, 2, 1)[0].numpy()
        want = ref.get_codebook_indices(torch.from_numpy(mel)[None])[0].numpy()
        decoded = ref.decode(torch.from_numpy(want)[None])[0].numpy()
    np.testing.assert_allclose(np.asarray(model.encode_latents(mel)), latents, atol=1e-4)
    got = np.asarray(model.encode(mel))
    assert got.shape == (12,) and len(set(want.tolist())) > 4
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(np.asarray(model.decode(got)), decoded, rtol=1e-5, atol=1e-4)


def test_front_end_is_torch_mel_divided_by_mel_stats(imported):
    _, model, _ = imported
    assert model.cfg.mel == XTTS_DVAE_MEL
    wave = (0.1 * np.random.default_rng(1).standard_normal(22050)).astype(np.float32)
    want = (torchaudio_mel(wave, torch, n_fft=1024).numpy() / MEL_NORMS[:, None]).astype(np.float32)
    np.testing.assert_allclose(log_mel(wave, model.cfg.mel, model.cfg.mel_stats), want, atol=2e-4)
    padded = dvae_mel(wave, model.cfg)  # 87 frames, padded to 88 with silence
    assert padded.shape == (80, 88)
    np.testing.assert_allclose(padded[:, :87], want, atol=2e-4)


def test_bad_checkpoints_are_refused(imported, tmp_path):
    ref, _, root = imported
    state = ref.state_dict()
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="no DiscreteVAE tensors"):
        load_xtts_dvae(tmp_path / "other.pth")
    torch.save({**state, "encoder.9.weight": torch.zeros(2)}, tmp_path / "extra.pth")
    with pytest.raises(UserError, match="does not read: encoder.9.weight"):
        load_xtts_dvae(tmp_path / "extra.pth")
    with pytest.raises(UserError, match="mel_stats has 20 values"):
        load_xtts_dvae(root / "dvae.pth", np.ones(20, np.float32))
    torch.save(torch.zeros(80), tmp_path / "zeros.pth")
    with pytest.raises(UserError, match="no positive finite mel norms"):
        read_mel_norms(tmp_path / "zeros.pth")
    # coqui's GPTTrainer checkpoints hold the DVAE under xtts.dvae.* (with the GPT beside it)
    trainer = {"model": {**{"xtts.dvae." + k: v for k, v in state.items()}, "xtts.gpt.x": torch.zeros(1)}}
    torch.save(trainer, tmp_path / "trainer.pth")
    np.testing.assert_array_equal(load_xtts_dvae(tmp_path / "trainer.pth").codebook.embed, ref.codebook.embed.t().numpy())
