"""A torch reference of XTTS-v2's mel front ends, shared by the conditioning and DVAE tests."""

import numpy as np


def torchaudio_mel(wave, torch, n_mels=80, n_fft=2048):
    """XTTS-v2's ``wav_to_mel_cloning`` (n_fft 2048) and ``TorchMelSpectrogram`` (the DVAE's, n_fft
    1024), before ``/ mel_stats``, without torchaudio: torch.stft and torchaudio's
    ``melscale_fbanks`` formula (HTK scale, slaney area norm) written out here."""
    hop, win, sr, f_max = 256, 1024, 22050, 8000.0
    spec = torch.stft(torch.from_numpy(wave).double(), n_fft=n_fft, hop_length=hop, win_length=win,
                      window=torch.hann_window(win, dtype=torch.float64), center=True, pad_mode="reflect",
                      return_complex=True).abs() ** 2
    freqs = torch.linspace(0, sr // 2, n_fft // 2 + 1, dtype=torch.float64)
    hz_to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    m = torch.linspace(hz_to_mel(0.0), hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    f = 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    slopes = f[None, :] - freqs[:, None]
    down, up = -slopes[:, :-2] / (f[1:-1] - f[:-2]), slopes[:, 2:] / (f[2:] - f[1:-1])
    bank = torch.clamp(torch.minimum(down, up), min=0.0) * (2.0 / (f[2:] - f[:-2]))[None, :]
    return torch.log(torch.clamp(bank.T @ spec, min=1e-5))
