"""Turn a speech manifest into DVAE audio tokens for TTS training.

    python tools/encode_audio.py --dvae runs/dvae/dvae.safetensors \\
        --data data/speech/train.jsonl --out data/tokens/train

writes ``OUT.bin`` (every utterance's tokens, uint16, one after another), ``OUT.jsonl`` (one row per
utterance: audio_path, text, speaker, offset, length) and ``OUT.json`` (the DVAE config with its
mel settings, tokens per second, and the dataset report). One token covers 1,024 samples
(hop 256 x 4). Broken or unusable files are skipped and counted, never fatal.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from xtts_jax.audio.datasets import SKIP_REASONS, load_dataset
from xtts_jax.audio.io import load_audio
from xtts_jax.errors import UserError, run_cli
from xtts_jax.models.dvae import DVAE, dvae_mel, load_dvae

BUCKET_TOKENS = 16  # inputs are padded to a multiple of this many tokens: few shapes, few compiles


def encode_wave(model: DVAE, wave: np.ndarray, bucket_tokens: int = BUCKET_TOKENS) -> np.ndarray:
    """Tokens ``int32 [tokens]`` of one waveform, one per 1,024 samples (rounded up).

    The waveform is padded with digital silence to a whole bucket, so a corpus compiles the
    encoder for a handful of shapes; the tokens past the utterance are dropped.
    """
    mel = dvae_mel(wave, model.cfg, bucket_tokens)
    return np.asarray(_encode(model, jnp.asarray(mel)))[: model.cfg.n_tokens(len(wave))]


_encode = eqx.filter_jit(DVAE.encode)


def choose_per_speaker(utts: list, n: int, seed: int = 0) -> list:
    """At most ``n`` utterances of each speaker, drawn at random (seeded), speakers in name order."""
    shuffled = list(utts)
    random.Random(seed).shuffle(shuffled)
    by_speaker: dict[str, list] = {}
    for u in shuffled:
        by_speaker.setdefault(u.speaker, []).append(u)
    return [u for s in sorted(by_speaker) for u in by_speaker[s][:n]]


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dvae", required=True, help="dvae.safetensors written by recipes/train_dvae.py")
    ap.add_argument("--data", required=True, help="a manifest (.jsonl/.csv) or a dataset folder (LJSpeech, LibriTTS, VCTK)")
    ap.add_argument("--kind", default="auto", help="dataset kind: auto, ljspeech, libritts, vctk, manifest")
    ap.add_argument("--out", required=True, help="output stem: writes OUT.bin, OUT.jsonl, OUT.json")
    ap.add_argument("--min-seconds", type=float, default=0.5)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--per-speaker", type=int, default=0,
                    help="encode at most this many utterances a speaker, a seeded random choice (0: all); "
                    "a held-out split the trainer only samples from need not be encoded whole")
    args = ap.parse_args(argv)
    if args.per_speaker < 0:
        raise UserError(f"--per-speaker {args.per_speaker} must be >= 0")
    if not Path(args.dvae).exists():
        raise UserError(f"DVAE weights {args.dvae} do not exist; train them with recipes/train_dvae.py.")
    model = load_dvae(args.dvae)  # a folder or a broken file is one sentence naming it
    if model.decoder_only:  # refuse before reading the dataset
        raise UserError(f"{args.dvae} holds only the DVAE decoder (a packed model); encoding audio needs the "
                        "full DVAE from recipes/train_dvae.py")
    cfg = model.cfg
    if cfg.num_tokens > np.iinfo(np.uint16).max + 1:
        raise UserError(f"DVAE has {cfg.num_tokens} codes, more than a uint16 token file can hold.")
    utts, report = load_dataset(args.data, args.kind, min_seconds=args.min_seconds, max_seconds=args.max_seconds)
    if not utts:
        reasons = ", ".join(f"{r} {report[r]}" for r in SKIP_REASONS if report[r])
        raise UserError(f"no usable utterances in {args.data} ({reasons or 'it lists none'}).")

    if args.per_speaker:
        utts = choose_per_speaker(utts, args.per_speaker)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    offset, rows, failed = 0, [], 0
    with open(str(out) + ".bin.tmp", "wb") as f:
        for u in utts:
            try:
                wave = load_audio(u.audio_path, cfg.mel.sample_rate)
            except UserError as e:  # a header that parsed but samples that do not: count, go on
                failed += 1
                print(f"warning: {e}", file=sys.stderr)
                continue
            codes = encode_wave(model, wave)
            f.write(codes.astype(np.uint16).tobytes())
            rows.append({"audio_path": str(u.audio_path), "text": u.text, "speaker": u.speaker,
                         "offset": offset, "length": int(codes.size)})
            offset += int(codes.size)
    Path(str(out) + ".bin.tmp").replace(str(out) + ".bin")
    with open(str(out) + ".jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tokens_per_second = cfg.mel.sample_rate / (cfg.mel.hop_length * cfg.downsample)
    report = {k: v for k, v in report.items() if k != "examples"}
    summary = {"dvae": cfg.to_dict(), "dvae_path": str(Path(args.dvae).resolve()), "utterances": len(rows),
               "tokens": offset, "tokens_per_second": tokens_per_second, "dtype": "uint16",
               "decode_failed": failed, "dataset_report": report}
    Path(str(out) + ".json").write_text(json.dumps(summary, indent=2))
    print(f"{len(rows)} utterances, {offset} tokens ({tokens_per_second:.2f}/s) -> {out}.bin; "
          f"skipped {report['skipped'] + failed}")
    return 0


if __name__ == "__main__":
    main()
