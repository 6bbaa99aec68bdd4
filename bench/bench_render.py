"""Griffin-Lim rendering speed and fidelity: our inversion against librosa's, on the same mels.

A speech-like test signal (a harmonic voice with a wandering pitch, moving formant and syllable
envelope, plus noise bursts) is cut into sentences; each sentence is rendered from (a) its own
log-mel and (b) the mel the demo DVAE decodes from its tokens, the way synthesis renders. Both
paths start from the same mels:

* ``librosa``: what rendering used before: ``librosa.feature.inverse.mel_to_stft`` (NNLS through
  L-BFGS-B) then ``librosa.griffinlim``;
* ``ours``: :func:`xtts_jax.audio.mel.griffin_lim` (pseudo-inverse + multiplicative NNLS steps,
  whole-array fast Griffin-Lim).

Printed per path: wall seconds, real-time factor, spectral convergence against the signal's true
STFT magnitude (own mels only) and the mean log-mel error of the audio against the mel it was
rendered from. Machine load (``os.getloadavg``) is printed before and after: the CPU is shared.

    python bench/bench_render.py                      # 60 s of audio in 3 s sentences
    python bench/bench_render.py --seconds 20 --skip-librosa
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import jax.numpy as jnp
import librosa
import numpy as np

from xtts_jax.audio.mel import MelConfig, griffin_lim, log_mel
from xtts_jax.errors import run_cli

DEMO_DVAE = Path(__file__).resolve().parents[1] / "xtts_jax" / "assets" / "tts_demo" / "dvae.safetensors"


def speech_like(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """A voiced signal with speech's rough structure; peak 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 130 + 25 * np.sin(2 * np.pi * 0.6 * t) + 12 * np.sin(2 * np.pi * 2.9 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    formant = 700 + 400 * np.sin(2 * np.pi * 1.3 * t)
    voice = sum(np.sin(k * phase) / k * np.exp(-(((k * f0) - formant) / 1200) ** 2) for k in range(1, 50))
    syllables = np.sin(2 * np.pi * 2.1 * t) ** 2
    noise = 0.15 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 0.8 * t) > 0.7)
    x = syllables * voice + noise
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def librosa_griffin_lim(mel: np.ndarray, cfg: MelConfig, n_iter: int, length: int | None) -> np.ndarray:
    """The rendering this repo used before: librosa's NNLS mel inversion and Griffin-Lim."""
    stft = librosa.feature.inverse.mel_to_stft(
        np.exp(mel), sr=cfg.sample_rate, n_fft=cfg.n_fft, power=2.0, fmin=cfg.fmin, fmax=cfg.fmax,
        htk=cfg.htk, norm=cfg.norm)
    return librosa.griffinlim(stft, n_iter=n_iter, hop_length=cfg.hop_length, win_length=cfg.win_length,
                              n_fft=cfg.n_fft, center=True, pad_mode="reflect", length=length, random_state=0)


def spectral_convergence(reference: np.ndarray, audio: np.ndarray, cfg: MelConfig) -> float:
    """||S_ref - S_audio||_F / ||S_ref||_F of STFT magnitudes (lower is better)."""
    def mag(x):
        return np.abs(librosa.stft(x, n_fft=cfg.n_fft, hop_length=cfg.hop_length, pad_mode="reflect"))

    ref = mag(reference)
    return float(np.linalg.norm(ref - mag(audio[: len(reference)])) / np.linalg.norm(ref))


def dvae_mels(pieces: list[np.ndarray], dvae_path: Path) -> list[np.ndarray]:
    """Each piece's tokens through the DVAE and back: the plain log-mel synthesis renders."""
    from xtts_jax.models.dvae import dvae_mel, load_dvae

    dvae = load_dvae(str(dvae_path))
    mels = []
    for piece in pieces:
        codes = dvae.encode(jnp.asarray(dvae_mel(piece, dvae.cfg)))
        mel = np.asarray(dvae.decode(codes))
        if dvae.cfg.mel_stats is not None:
            mean, std = dvae.cfg.mel_stats.arrays()
            mel = mel * std + mean
        mels.append(mel)
    return mels


def run(mels, pieces, render, cfg: MelConfig, with_truth: bool) -> dict:
    start = time.perf_counter()
    audio = [render(m) for m in mels]
    seconds = time.perf_counter() - start
    mel_err = float(np.mean([np.abs(log_mel(a, cfg)[:, 2:m.shape[1] - 2] - m[:, 2:len(a) // cfg.hop_length - 1]).mean()
                             for a, m in zip(audio, mels)]))
    sc = float(np.mean([spectral_convergence(p, a, cfg) for p, a in zip(pieces, audio)])) if with_truth else None
    return dict(seconds=seconds, mel_err=mel_err, sc=sc)


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="audio to render in all")
    ap.add_argument("--sentence-seconds", type=float, default=3.0, help="length of each rendered piece")
    ap.add_argument("--n-iter", type=int, default=32, help="Griffin-Lim iterations (the decoder's default)")
    ap.add_argument("--dvae", default=str(DEMO_DVAE), help="DVAE whose decoded mels are rendered too")
    ap.add_argument("--skip-librosa", action="store_true", help="time only our path")
    args = ap.parse_args(argv)

    cfg = MelConfig()
    wave = speech_like(args.seconds, cfg.sample_rate)
    step = int(args.sentence_seconds * cfg.sample_rate)
    pieces = [wave[i:i + step] for i in range(0, len(wave), step) if len(wave[i:i + step]) > cfg.n_fft]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; load before "
          f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{len(wave) / cfg.sample_rate:.1f} s of audio in {len(pieces)} pieces, {args.n_iter} Griffin-Lim iterations")
    sources = {"own mel": ([log_mel(p, cfg) for p in pieces], True)}
    if Path(args.dvae).is_file():
        sources["DVAE mel"] = (dvae_mels(pieces, Path(args.dvae)), False)
    paths = {"ours": lambda m: griffin_lim(m, cfg, n_iter=args.n_iter)}
    if not args.skip_librosa:
        paths["librosa"] = lambda m: librosa_griffin_lim(m, cfg, args.n_iter, None)
    print(f"{'mels':9s} {'path':8s} {'seconds':>8s} {'x real time':>12s} {'spectral conv.':>15s} {'log-mel err':>12s}")
    for source, (mels, truth) in sources.items():
        for name, render in paths.items():
            r = run(mels, pieces, render, cfg, truth)
            sc = f"{r['sc']:.4f}" if r["sc"] is not None else "-"
            print(f"{source:9s} {name:8s} {r['seconds']:8.2f} {args.seconds / r['seconds']:12.1f} {sc:>15s} "
                  f"{r['mel_err']:12.3f}", flush=True)
    print(f"load after {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    main()
