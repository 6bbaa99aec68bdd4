"""Speak text with a trained TTS model.

    python tools/synthesize.py --text "Once upon a time, a little fox found a shiny key." \\
        --speaker flite_slt -o out.wav                       # the shipped CPU demo model
    python tools/synthesize.py --checkpoint runs/tts/tts.safetensors --speaker emb.npy \\
        --text "Hello there." -o out.wav

    python tools/convert_xtts.py --checkpoint XTTS-v2/ -o runs/xtts     # an XTTS-v2 release folder
    python tools/synthesize.py --checkpoint runs/xtts/tts.safetensors --speaker "Ana Florence" \
        --language en --text "Hello there." -o out.wav

Text from --text, --text-file or standard input; long text is split into sentences, sampled
together in batches and joined. The speaker is an embedding (.npy float32, (d,) or (K, d), e.g.
from tools/speaker_embedding.py), a voice in speakers/ beside the checkpoint, or reference
recordings (--speaker-wav). Audio is rendered through --vocoder: a HiFiGAN checkpoint, or by
default vocoder.safetensors beside the checkpoint when there is one (a converted XTTS-v2 folder),
else the DVAE decoder + Griffin-Lim. A decoder that takes a speaker vector (XTTS-v2's HiFiGAN, or a
DVAE decoder that reads reference features, the default model's) gets NAME.decoder.npy beside the
speaker's .npy, --decoder-speaker, or, with --speaker-wav, what it computes from those recordings
(the speaker encoder beside the checkpoint, or the DVAE's reference features).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from xtts_jax.assets import TTS_DEMO  # noqa: E402
from xtts_jax.errors import UserError, run_cli  # noqa: E402
from xtts_jax.inference.flags import add_sampling_flags, candidates_from_flags, sampling_from_flags  # noqa: E402


def speaker_path(arg: str, checkpoint: str) -> str:
    """``arg`` itself when it is a file, else ``speakers/ARG.npy`` beside the checkpoint."""
    if Path(arg).is_file() or arg.endswith(".npy"):
        return arg
    folder = Path(checkpoint).with_name("speakers")
    if (folder / f"{arg}.npy").is_file():
        return str(folder / f"{arg}.npy")
    names = sorted(p.stem for p in folder.glob("*.npy") if not p.stem.endswith(".decoder")) if folder.is_dir() else []
    raise UserError(f"speaker {arg!r} is neither a .npy file nor a voice beside the checkpoint"
                    + (f" (voices: {', '.join(names)})" if names else ""))


def decoder_speaker(args, speaker_file: str | None, checkpoint: str, vocoder, model, dvae=None):
    """The decoder's speaker vector ``[e]``, or None when the decoder takes none. A
    speaker-conditioned DVAE renders unconditioned (None) from a speaker file without its
    NAME.decoder.npy; XTTS-v2's HiFiGAN cannot."""
    from xtts_jax.inference.tts import decoder_speaker_dim, decoder_speaker_from_wavs, load_speaker_embedding

    dim = decoder_speaker_dim(vocoder, dvae)
    optional = dim != vocoder.speaker_dim
    if not dim:
        if args.decoder_speaker:
            raise UserError(f"the {vocoder.backend} decoder takes no speaker embedding; drop --decoder-speaker")
        return None
    if args.decoder_speaker:
        path = args.decoder_speaker
    elif speaker_file is not None:
        path = str(Path(speaker_file).with_suffix("")) + ".decoder.npy"
        if not Path(path).is_file():
            if optional:
                print(f"note: no {path}: the DVAE decoder renders without the voice's reference features",
                      file=sys.stderr)
                return None
            raise UserError(f"this decoder needs a {dim}-d speaker embedding: give --decoder-speaker "
                            f"or put it at {path}")
    else:
        emb = decoder_speaker_from_wavs(checkpoint, model, args.speaker_wav, dvae)
        if emb is None:
            raise UserError(f"this decoder needs a {dim}-d speaker embedding and there is no "
                            "speaker_encoder.safetensors beside the checkpoint to compute it; give --decoder-speaker")
        return emb
    return load_speaker_embedding(path, dim).mean(0)  # (K, e): K references, averaged as XTTS


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
    ap.add_argument("--checkpoint", default=str(TTS_DEMO),
                    help="tts.safetensors (weights + config); default: the shipped CPU demo model")
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--speaker", help="speaker embedding .npy: float32 (d,) or (K, d); or the name of a "
                     "voice in speakers/ beside the checkpoint (the demo's: flite_awb, flite_kal, flite_rms, flite_slt)")
    who.add_argument("--speaker-wav", nargs="+", help="reference recording(s) of the speaker")
    ap.add_argument("--dvae", help="dvae.safetensors (default: dvae.safetensors beside the checkpoint)")
    ap.add_argument("--decoder-speaker", help="the decoder's speaker vector .npy (XTTS-v2's HiFiGAN: 512-d; a DVAE that "
                    "reads references: 160-d)")
    ap.add_argument("--reference-strength", type=float,
                    help="a DVAE decoder that reads references: how far the voice's features are pushed from the "
                         "nearest of its training voices (1: as read; default: the DVAE's own)")
    ap.add_argument("--vocoder", default="auto", help="griffinlim, a HiFiGAN checkpoint, or auto (default): "
                    "vocoder.safetensors beside the checkpoint if there is one, else griffinlim")
    ap.add_argument("--speed", type=float, default=1.0, help="> 1 speaks faster, < 1 slower (XTTS-v2's speed)")
    ap.add_argument("--language", default="en", help="language of the text, for XTTS-v2 tokenizers (en, es, fr, ...)")
    ap.add_argument("-o", "--output", required=True, help="the .wav to write")
    ap.add_argument("--seed", type=int, default=0)
    add_sampling_flags(ap)
    ap.add_argument("--max-new-tokens", type=int, default=None, help="audio tokens per sentence (default: all positions)")
    ap.add_argument("--batch-size", type=int, default=8, help="sentences sampled together")
    args = ap.parse_args(argv)

    text = read_text(args)
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} must be >= 1")
    # the checkpoint's first reader: a missing, folder or broken file is one line here
    sampling = sampling_from_flags(args, args.checkpoint, args.max_new_tokens or 1)
    candidates = candidates_from_flags(args, args.checkpoint)

    import jax

    from xtts_jax import compile_cache
    from xtts_jax.audio.io import save_audio
    from xtts_jax.inference import tts as pipeline
    from xtts_jax.inference.vocoder import Vocoder, load_vocoder
    from xtts_jax.models.dvae import load_dvae

    compile_cache.enable()  # a second run loads the sampler and decoder instead of compiling them
    model = pipeline.load_tts(args.checkpoint)
    tokenizer = pipeline.load_text_tokenizer(args.checkpoint, model.config)
    if tokenizer is not None:
        tokenizer.char_limit(args.language)  # an unknown language is a UserError before any work
    speaker_file = None
    if args.speaker is not None:
        speaker_file = speaker_path(args.speaker, args.checkpoint)
        cond = pipeline.load_speaker_embedding(speaker_file, model.config.speaker_width)
    else:
        cond = pipeline.speaker_from_wavs(model, args.speaker_wav)
    dvae_path = args.dvae or str(Path(args.checkpoint).with_name("dvae.safetensors"))
    dvae = load_dvae(dvae_path) if args.dvae or Path(dvae_path).is_file() else None
    source = args.vocoder
    if source.lower() == "auto":
        beside = Path(args.checkpoint).with_name("vocoder.safetensors")
        source = str(beside) if beside.is_file() else "griffinlim"
    if source.lower() in ("griffinlim", "griffin-lim") and dvae is not None:
        vocoder = Vocoder.griffin_lim(dvae.cfg.mel)
    else:
        vocoder = load_vocoder(source)
    decoder_emb = decoder_speaker(args, speaker_file, args.checkpoint, vocoder, model, dvae)
    from xtts_jax.inference.rerank import recognizer_beside

    synth = pipeline.Synthesizer(model, vocoder, dvae, tokenizer=tokenizer, language=args.language, speed=args.speed,
                                 recognizer=recognizer_beside(args.checkpoint, candidates), candidates=candidates,
                                 reference_strength=args.reference_strength)
    if args.max_new_tokens is None:
        import dataclasses

        sampling = dataclasses.replace(sampling, max_new_tokens=synth.max_new_tokens())

    n = len(synth.sentences(text))
    best = f", the best of {candidates} candidates each" if candidates > 1 else ""
    print(f"synthesizing {n} sentence{'s' * (n != 1)}{best} with {vocoder.backend}...", file=sys.stderr)
    t0 = time.perf_counter()
    (wave,) = synth.synthesize([text], [cond], jax.random.key(args.seed), sampling, args.batch_size,
                               speaker=decoder_emb, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    elapsed = time.perf_counter() - t0
    out = save_audio(args.output, wave, synth.sample_rate)
    seconds = len(wave) / synth.sample_rate
    rtf = elapsed / seconds if seconds else float("inf")
    print(f"wrote {out}: {seconds:.2f} s of audio in {elapsed:.2f} s (real-time factor {rtf:.2f})")
    return 0


if __name__ == "__main__":
    main()
