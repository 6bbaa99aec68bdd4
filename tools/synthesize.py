"""Speak text with a trained TTS model.

    python tools/synthesize.py --text "Once upon a time, a little fox found a shiny key." \\
        --speaker flite_slt -o out.wav                       # the shipped CPU demo model
    python tools/synthesize.py --checkpoint runs/tts/tts.safetensors --speaker emb.npy \\
        --text "Hello there." -o out.wav

Text from --text, --text-file or standard input; long text is split into sentences, sampled
together in batches and joined. The speaker is an embedding (.npy float32, (d,) or (K, d), e.g.
from tools/speaker_embedding.py) or reference recordings (--speaker-wav). Audio is rendered
through --vocoder (a HiFiGAN checkpoint) when given, else the DVAE decoder + Griffin-Lim.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from xtts_jax.errors import UserError, run_cli  # noqa: E402
from xtts_jax.inference.flags import add_sampling_flags, sampling_from_flags  # noqa: E402

DEMO = ROOT / "xtts_jax" / "assets" / "tts_demo" / "tts.safetensors"


def speaker_path(arg: str, checkpoint: str) -> str:
    """``arg`` itself when it is a file, else ``speakers/ARG.npy`` beside the checkpoint."""
    if Path(arg).is_file() or arg.endswith(".npy"):
        return arg
    folder = Path(checkpoint).with_name("speakers")
    if (folder / f"{arg}.npy").is_file():
        return str(folder / f"{arg}.npy")
    names = sorted(p.stem for p in folder.glob("*.npy")) if folder.is_dir() else []
    raise UserError(f"speaker {arg!r} is neither a .npy file nor a voice beside the checkpoint"
                    + (f" (voices: {', '.join(names)})" if names else ""))


def read_text(args) -> str:
    if args.text is not None and args.text_file is not None:
        raise UserError("give the text with --text or --text-file, not both")
    if args.text is not None:
        text = args.text
    elif args.text_file is not None:
        if not Path(args.text_file).is_file():
            raise UserError(f"text file {args.text_file} does not exist")
        try:
            text = Path(args.text_file).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"text file {args.text_file} is not UTF-8 text") from None
    else:
        text = sys.stdin.read()
    if not text.strip():
        raise UserError("the text is empty")
    return text


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", help="the text to speak (else --text-file, else standard input)")
    ap.add_argument("--text-file", help="a UTF-8 text file to speak")
    ap.add_argument("--checkpoint", default=str(DEMO),
                    help="tts.safetensors (weights + config); default: the shipped CPU demo model")
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--speaker", help="speaker embedding .npy: float32 (d,) or (K, d); or the name of a "
                     "voice in speakers/ beside the checkpoint (the demo's: flite_awb, flite_kal, flite_rms, flite_slt)")
    who.add_argument("--speaker-wav", nargs="+", help="reference recording(s) of the speaker")
    ap.add_argument("--dvae", help="dvae.safetensors (default: dvae.safetensors beside the checkpoint)")
    ap.add_argument("--vocoder", default="griffinlim", help="griffinlim, or a HiFiGAN checkpoint")
    ap.add_argument("-o", "--output", required=True, help="the .wav to write")
    ap.add_argument("--seed", type=int, default=0)
    add_sampling_flags(ap)
    ap.add_argument("--max-new-tokens", type=int, default=None, help="audio tokens per sentence (default: all positions)")
    ap.add_argument("--batch-size", type=int, default=8, help="sentences sampled together")
    args = ap.parse_args(argv)

    text = read_text(args)
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} must be >= 1")
    if not Path(args.checkpoint).is_file():
        raise UserError(f"TTS checkpoint {args.checkpoint} does not exist")
    sampling = sampling_from_flags(args, args.checkpoint, args.max_new_tokens or 1)

    import jax
    import numpy as np

    from xtts_jax.audio.io import save_audio
    from xtts_jax.inference import tts as pipeline
    from xtts_jax.inference.vocoder import Vocoder, load_vocoder
    from xtts_jax.models.dvae import load_dvae

    model = pipeline.load_tts(args.checkpoint)
    if args.speaker is not None:
        cond = pipeline.load_speaker_embedding(speaker_path(args.speaker, args.checkpoint), model.config.gpt.n_embd)
    else:
        cond = pipeline.speaker_from_wavs(model, args.speaker_wav)
    dvae_path = args.dvae or str(Path(args.checkpoint).with_name("dvae.safetensors"))
    dvae = load_dvae(dvae_path) if Path(dvae_path).is_file() else None
    if args.dvae and dvae is None:
        raise UserError(f"DVAE weights {args.dvae} do not exist")
    if args.vocoder.lower() in ("griffinlim", "griffin-lim") and dvae is not None:
        vocoder = Vocoder.griffin_lim(dvae.cfg.mel)
    else:
        vocoder = load_vocoder(args.vocoder)
    synth = pipeline.Synthesizer(model, vocoder, dvae)
    if args.max_new_tokens is None:
        import dataclasses

        sampling = dataclasses.replace(sampling, max_new_tokens=synth.max_new_tokens())

    n = len(pipeline.split_sentences(text))
    print(f"synthesizing {n} sentence{'s' * (n != 1)} with {args.vocoder}...", file=sys.stderr)
    t0 = time.perf_counter()
    (wave,) = synth.synthesize([text], [cond], jax.random.key(args.seed), sampling, args.batch_size,
                               progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    elapsed = time.perf_counter() - t0
    wave = np.clip(wave, -1.0, 1.0)
    out = save_audio(args.output, wave, synth.sample_rate)
    seconds = len(wave) / synth.sample_rate
    rtf = elapsed / seconds if seconds else float("inf")
    print(f"wrote {out}: {seconds:.2f} s of audio in {elapsed:.2f} s (real-time factor {rtf:.2f})")
    return 0


if __name__ == "__main__":
    main()
