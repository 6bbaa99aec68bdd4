"""Benchmark an XTTS-v2 model end to end: conversion, then each stage of synthesize.py.

    python bench/bench_xtts_folder.py --xtts-dir XTTS-v2/         # a real release folder
    python bench/bench_xtts_folder.py --random --work /tmp/xtts   # XTTS-v2-shaped random weights

``--random`` writes the folder from the PyTorch reference modules of the tests (coqui's key layout
at XTTS-v2's size: 30 GPT-2 blocks of d 1024, 6,681 text tokens, 1,026 audio tokens, the HiFiGAN
decoder, the ResNet speaker encoder; needs torch and transformers, about 2 GB on disk), so the
conversion and every stage run at the real size without the real weights. Random weights never
emit the stop token: every sentence makes ``--new-tokens`` audio tokens.

Prints seconds for conversion and loading; the first call of each stage (compile + run) and a
second, timed call: reference conditioning from 10 s of audio (GPT latents and the decoder's
speaker embedding), audio-token decoding at batch 1 (tokens/s, prefill included), and rendering
through the HiFiGAN decoder (times real time).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from xtts_jax.errors import UserError, run_cli  # noqa: E402


def write_random_folder(folder: Path) -> None:
    """An XTTS-v2-shaped folder with random weights, from the tests' PyTorch references."""
    sys.path.insert(0, str(ROOT / "tests"))
    import dataclasses
    import json

    import torch
    from test_hifigan_import import TorchXttsDecoder, _randomise
    from test_speaker_encoder import FULL, random_reference
    from test_xtts_folder import _randomise_gpt, build_vocab
    from test_xtts_import import XttsGPT, xtts_state_dict

    from xtts_jax.models.conditioning import XTTS_MEL
    from xtts_jax.models.hifigan import preset
    from xtts_jax.models.tts import PRESETS

    folder.mkdir(parents=True, exist_ok=True)
    base = PRESETS["xtts-v2"]
    cfg = dataclasses.replace(base, text_vocab_size=6681, text_start_token=261, text_stop_token=0, tokenizer="xtts",
                              conditioning=dataclasses.replace(base.conditioning, mel=XTTS_MEL, chunking="xtts"))
    state = {**xtts_state_dict(_randomise_gpt(XttsGPT(cfg))), "mel_stats": 2.0 + torch.rand(80)}
    state.update({"hifigan_decoder." + k: v for k, v in
                  _randomise(TorchXttsDecoder(preset("xtts-v2"), "new"), seed=1).state_dict().items()})
    state.update({"hifigan_decoder.speaker_encoder." + k: v for k, v in random_reference(FULL, seed=2).state_dict().items()})
    torch.save({"model": state, "config": {}}, folder / "model.pth")
    build_vocab(folder / "vocab.json", size=cfg.text_vocab_size)
    (folder / "config.json").write_text(json.dumps({"model": "xtts", "temperature": 0.75, "repetition_penalty": 5.0,
                                                    "top_k": 50, "top_p": 0.85, "gpt_cond_len": 30,
                                                    "gpt_cond_chunk_len": 4, "max_ref_len": 30}))
    torch.save({"Random Voice": {"gpt_cond_latent": torch.randn(1, 32, 1024),
                                 "speaker_embedding": torch.nn.functional.normalize(torch.randn(1, 512, 1), dim=1)}},
               folder / "speakers_xtts.pth")


def stage(name: str, fn, rows: list) -> object:
    """Run ``fn`` twice: the first call compiles, the second is the timed one."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    rows.append((name, first, time.perf_counter() - t0))
    return out


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--xtts-dir", help="an XTTS-v2 release folder (model.pth, vocab.json, config.json)")
    src.add_argument("--random", action="store_true", help="write an XTTS-v2-shaped folder of random weights")
    ap.add_argument("--work", help="where the random folder and the conversion go (default: a temporary folder)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--text", default="It was a sunny day, and Anna wanted to play outside with Lily.")
    args = ap.parse_args(argv)
    if args.new_tokens < 1:
        raise UserError(f"--new-tokens {args.new_tokens} must be >= 1")

    from xtts_jax.convert.xtts_folder import convert_xtts_folder
    from xtts_jax.inference import tts as P
    from xtts_jax.inference.sampling import SamplingConfig
    from xtts_jax.inference.vocoder import load_vocoder

    work = Path(args.work or tempfile.mkdtemp(prefix="xtts_bench_"))
    if args.random:
        t0 = time.perf_counter()
        write_random_folder(work / "XTTS-v2")
        print(f"wrote a random XTTS-v2-shaped folder in {time.perf_counter() - t0:.1f} s")
        source = work / "XTTS-v2"
    else:
        source = Path(args.xtts_dir)
    t0 = time.perf_counter()
    convert_xtts_folder(source, work / "converted", log=lambda *a: None)
    t_convert = time.perf_counter() - t0
    ckpt = work / "converted" / "tts.safetensors"
    t0 = time.perf_counter()
    model = P.load_tts(ckpt)
    synth = P.Synthesizer(model, load_vocoder(work / "converted" / "vocoder.safetensors"),
                          tokenizer=P.load_text_tokenizer(ckpt, model.config), language="en")
    t_load = time.perf_counter() - t0

    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(10 * 22050) / 22050
    ref = 0.2 * np.sin(2 * np.pi * 160 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(len(t))
    sf.write(work / "ref.wav", ref.astype(np.float32), 22050)
    rows: list = []
    cond = stage("GPT conditioning, 10 s reference", lambda: P.speaker_from_wavs(model, [str(work / "ref.wav")]), rows)
    speaker = stage("decoder speaker embedding, 10 s reference",
                    lambda: P.decoder_speaker_from_wavs(ckpt, model, [str(work / "ref.wav")]), rows)
    row = synth.text_row(args.text)
    sampling = SamplingConfig(**P.sampling_defaults(ckpt), max_new_tokens=args.new_tokens)
    codes = stage(f"decode {args.new_tokens} audio tokens, batch 1",
                  lambda: synth.codes([row], [cond], jax.random.key(0), sampling)[0], rows)
    wave = stage("render through the HiFiGAN decoder", lambda: synth.render(codes, cond, row, speaker), rows)
    seconds = len(wave) / synth.sample_rate

    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(f"model: {model.config.gpt.n_layer} layers, d {model.config.gpt.n_embd}, "
          f"{model.config.text_vocab_size} text tokens; text {len(row)} tokens; {len(codes)} audio tokens -> {seconds:.2f} s")
    print(f"convert: {t_convert:.1f} s; load: {t_load:.1f} s")
    print("| stage | first call (compile + run) | second call | rate |\n|---|---:|---:|---|")
    rates = {2: f"{len(codes) / rows[2][2]:.1f} tokens/s", 3: f"{seconds / rows[3][2]:.1f}x real time"}
    for i, (name, first, second) in enumerate(rows):
        print(f"| {name} | {first:.2f} s | {second:.2f} s | {rates.get(i, '')} |")
    return 0


if __name__ == "__main__":
    main()
