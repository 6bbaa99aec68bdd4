"""Evaluate speech as the field does: Whisper word and character error rates, speaker similarity,
real-time factor, rung by rung.

    python tools/evaluate_tts.py --manifest data/eval/eval.jsonl --checkpoint xtts_jax/assets/tts_demo/tts.safetensors
    python tools/evaluate_tts.py --manifest data/eval/eval.jsonl --wavs generated/ --rungs recording,wavs

For the first ``--per-speaker`` usable utterances of each voice in a JSONL/CSV manifest
(audio_path, text, speaker), each rung makes the utterance's audio: the recording itself; its true
log-mel through the vocoder; its DVAE round trip; the model speaking the text, conditioned on
another clip of the same voice (``--checkpoint``); or generated wavs named after the recordings
(``--wavs``). Whisper tiny.en transcribes (WER/CER after text normalisation) and Resemblyzer's
speaker embedding compares each output with that other clip and with every voice. Writes
``report.md``, ``report.json`` (every transcript and score) and ``report.png`` to ``--out``.
Needs the ``eval`` extra.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from xtts_jax.assets import TTS_DEMO  # noqa: E402
from xtts_jax.errors import UserError, run_cli  # noqa: E402
from xtts_jax.inference.flags import add_sampling_flags, candidates_from_flags, sampling_from_flags  # noqa: E402



def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", required=True, help="JSONL or CSV manifest: audio_path, text, speaker")
    ap.add_argument("--checkpoint", help="tts.safetensors to synthesize with (adds the model rung)")
    ap.add_argument("--wavs", help="a folder of generated wavs, DIR/<recording stem>.wav (adds the wavs rung)")
    ap.add_argument("--rungs", help="comma-separated, in order, from recording, mel, dvae, model, wavs "
                    "(default: recording, mel, dvae, then model and wavs when given)")
    ap.add_argument("--dvae", help="dvae.safetensors (default: beside the checkpoint, else the shipped demo's)")
    ap.add_argument("--reference-strength", type=float,
                    help="a DVAE decoder that reads references: how far their features are pushed from the nearest of "
                         "its training voices, in the dvae and model rungs (1: as read; default: the DVAE's own)")
    ap.add_argument("--vocoder", default="griffinlim", help="griffinlim or a mel HiFiGAN checkpoint, for the mel and dvae rungs")
    ap.add_argument("--per-speaker", type=int, default=20, help="utterances per voice")
    ap.add_argument("--speakers", help="comma-separated voices (default: all in the manifest)")
    ap.add_argument("--conditioning", choices=("clip", "voice"), default="clip",
                    help="the model's speaker: another clip of the voice, or speakers/VOICE.npy beside the checkpoint")
    ap.add_argument("--voice-pool", help="comma-separated manifests (the training corpora, say) whose other voices "
                    "also compete in the nearest-voice test")
    ap.add_argument("--pool-clips", type=int, default=3, help="clips a pool voice is represented by")
    ap.add_argument("--timed", type=int, default=3, help="sentences timed alone for latency (0: none)")
    ap.add_argument("--out", default="runs/eval", help="folder for report.md, report.json, report.png")
    ap.add_argument("--save-audio", action="store_true", help="also write every rung's wavs under --out")
    ap.add_argument("--seed", type=int, default=0)
    add_sampling_flags(ap)
    args = ap.parse_args(argv)
    default = ["recording", "mel", "dvae"] + ["model"] * bool(args.checkpoint) + ["wavs"] * bool(args.wavs)
    args.rungs = [r.strip() for r in args.rungs.split(",")] if args.rungs else default
    from xtts_jax.eval.rungs import RUNGS

    if bad := [r for r in args.rungs if r not in RUNGS]:
        raise UserError(f"unknown rung(s) {', '.join(bad)}; choose from {', '.join(RUNGS)}")
    if "model" in args.rungs and not args.checkpoint:
        raise UserError("the model rung needs --checkpoint")
    if "wavs" in args.rungs and not args.wavs:
        raise UserError("the wavs rung needs --wavs")
    if args.pool_clips < 1:
        raise UserError(f"--pool-clips {args.pool_clips} must be >= 1")
    if args.per_speaker < 1:
        raise UserError(f"--per-speaker {args.per_speaker} must be >= 1")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise UserError(f"TTS checkpoint {args.checkpoint} is not a file")
    return args


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from xtts_jax.eval import rungs as R
    from xtts_jax.eval import report as report_io
    from xtts_jax.eval.asr import Whisper
    from xtts_jax.eval.scoring import reference_embeddings, score_rung, summarize, summarize_by_speaker
    from xtts_jax.eval.speaker import SpeakerEmbedder

    asr, embedder = Whisper(), SpeakerEmbedder()  # a missing eval extra is one line, before any work
    speakers = [s.strip() for s in args.speakers.split(",")] if args.speakers else None
    items, skipped = R.select(args.manifest, args.per_speaker, speakers)
    for s in skipped:
        print(f"skipped {s['audio_path'] or 'a manifest row'}: {s['reason']}", file=sys.stderr)
    print(f"evaluating {len(items)} utterances of {len({it.speaker for it in items})} voices "
          f"({len(skipped)} rows skipped), rungs: {', '.join(args.rungs)}", file=sys.stderr)

    import jax

    from xtts_jax import compile_cache
    from xtts_jax.inference.vocoder import Vocoder, load_vocoder
    from xtts_jax.models.dvae import load_dvae

    compile_cache.enable()

    dvae = vocoder = synth = sampling = None
    if {"mel", "dvae", "model"} & set(args.rungs):
        beside = Path(args.checkpoint).with_name("dvae.safetensors") if args.checkpoint else None
        dvae_path = args.dvae or (str(beside) if beside and beside.is_file() else str(TTS_DEMO.with_name("dvae.safetensors")))
        dvae = load_dvae(dvae_path)
        if dvae.decoder_only and "dvae" in args.rungs:  # refuse before the earlier rungs run
            raise UserError(f"the dvae rung encodes audio, and {dvae_path} holds only the DVAE decoder (a packed "
                            "model); pass --dvae with the full DVAE from recipes/train_dvae.py")
        if args.reference_strength is not None:
            from xtts_jax.models.dvae import check_strength

            check_strength(args.reference_strength, dvae.cfg)
        vocoder = (Vocoder.griffin_lim(dvae.cfg.mel) if args.vocoder.lower() in ("griffinlim", "griffin-lim")
                   else load_vocoder(args.vocoder))
        if vocoder.features != "mel" and {"mel", "dvae"} & set(args.rungs):
            raise UserError(f"the mel and dvae rungs need a mel vocoder; {args.vocoder} reads {vocoder.features}")
    if "model" in args.rungs:
        from xtts_jax.inference import tts as pipeline

        from xtts_jax.inference.rerank import recognizer_beside

        model = pipeline.load_tts(args.checkpoint)
        candidates = candidates_from_flags(args, args.checkpoint)
        synth = pipeline.Synthesizer(model, vocoder, dvae, recognizer=recognizer_beside(args.checkpoint, candidates),
                                     candidates=candidates, reference_strength=args.reference_strength)
        sampling = sampling_from_flags(args, args.checkpoint, synth.max_new_tokens())

    refs = reference_embeddings(items, embedder)
    pool = None
    if args.voice_pool:
        from xtts_jax.audio.datasets import read_manifest
        from xtts_jax.eval.scoring import pool_embeddings

        rows = []
        for m in (m.strip() for m in args.voice_pool.split(",") if m.strip()):
            if not Path(m).is_file():
                raise UserError(f"--voice-pool manifest {m} does not exist")
            rows += read_manifest(Path(m), collections.Counter())
        pool = pool_embeddings(rows, embedder, set(refs), args.pool_clips)
        print(f"nearest-voice test against {len(refs)} evaluated + {len(pool)} pool voices", file=sys.stderr)
    report = {"manifest": str(args.manifest), "utterances": len(items), "speakers": sorted({it.speaker for it in items}),
              "asr": Whisper.name, "embedder": SpeakerEmbedder.name, "seed": args.seed, "skipped": skipped,
              "checkpoint": args.checkpoint, "vocoder": args.vocoder, "conditioning": args.conditioning,
              "sampling": dataclasses.asdict(sampling) if sampling else None,
              "candidates": synth.candidates if synth else None,
              "voice_pool": sorted(pool) if pool else None, "rungs": {},
              "reference_strength": (None if dvae is None or not dvae.cfg.decoder_speaker else
                                     args.reference_strength or dvae.cfg.reference_strength)}
    for rung in args.rungs:
        t0 = time.perf_counter()
        if rung == "recording":
            rendered = R.recordings(items)
        elif rung == "mel":
            rendered = R.true_mel(items, vocoder, dvae.cfg.mel)
        elif rung == "dvae":
            rendered = R.dvae_round_trip(items, dvae, vocoder, args.reference_strength)
        elif rung == "wavs":
            rendered = R.folder(items, args.wavs)
        else:
            rendered = R.model_speech(items, synth, sampling, jax.random.key(args.seed), args.conditioning,
                                      Path(args.checkpoint).with_name("speakers"), args.timed)
        made = time.perf_counter() - t0
        records = score_rung(items, rendered, asr, embedder, refs, pool)
        if args.save_audio:
            _save(records, rendered, Path(args.out) / "audio" / rung)
        report["rungs"][rung] = {"overall": summarize(records), "per_speaker": summarize_by_speaker(records),
                                 "timing": rendered.timing, "records": records}
        o = report["rungs"][rung]["overall"]
        print(f"{rung:<10} WER {o['wer']:.3f}  CER {o['cer']:.3f}  similarity {o['similarity'] or float('nan'):.3f}"
              f"  other voices {o['other'] or float('nan'):.3f}  nearest voice {o['nearest_voice']:.0%}"
              f"  (made in {made:.0f} s, scored in {time.perf_counter() - t0 - made:.0f} s)", file=sys.stderr)
    paths = report_io.write(report, args.out)
    print(report_io.markdown(report))
    print(f"wrote {paths['md']}, {paths['json']}, {paths['png']}", file=sys.stderr)
    return 0


def _save(records, rendered, folder: Path) -> None:
    from xtts_jax.audio.io import save_audio

    folder.mkdir(parents=True, exist_ok=True)
    for rec, wave in zip(records, rendered.waves):
        if wave is not None:
            save_audio(folder / f"{Path(rec['audio_path']).stem}.wav", wave, rendered.sample_rate)


if __name__ == "__main__":
    main()
