"""Pack a trained TTS model to ship: 16-bit weights and a DVAE that only decodes.

    python tools/pack_model.py --tts runs/tts/tts.safetensors --dvae runs/dvae/dvae.safetensors \\
        --speakers runs/tts/speakers --out packed
    python tools/synthesize.py --checkpoint packed/tts.safetensors --speaker NAME --text "Hi." -o hi.wav

writes OUT/tts.safetensors (every metadata key of the checkpoint kept), OUT/dvae.safetensors (the
decoder and codebook vectors: enough to render audio tokens, not to encode audio) and
OUT/speakers/NAME.npy (float32, checked against the model), with ``--recognizer`` the code
recogniser that picks the best of ``--candidates`` (OUT/recognizer.safetensors), and prints their
sizes. tools/synthesize.py finds the DVAE, the recogniser and the voices beside the checkpoint.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from xtts_jax.errors import UserError, run_cli  # noqa: E402
from xtts_jax.inference.flags import FIELDS, add_sampling_flags  # noqa: E402
from xtts_jax.weights import STORAGE_DTYPES  # noqa: E402


def voices(folder: Path, width: int) -> list[Path]:
    """The speaker embeddings in ``folder``, each checked to be finite float32 of ``width``.
    NAME.decoder.npy files are left out: they feed a HiFiGAN vocoder, which a pack does not carry
    (a speaker-conditioned DVAE's are made from ``--voice-data``)."""
    from xtts_jax.inference.tts import load_speaker_embedding

    if not folder.is_dir():
        raise UserError(f"--speakers {folder} is not a folder")
    paths = sorted(p for p in folder.glob("*.npy") if not p.stem.endswith(".decoder"))
    if not paths:
        raise UserError(f"--speakers {folder} holds no speaker embedding (NAME.npy)")
    for p in paths:
        load_speaker_embedding(p, width)
    return paths


def voice_references(dvae, names: list[str], voice_data: str | None, clips: int) -> dict:
    """``{name: reference features}`` of a speaker-conditioned DVAE for each voice, from its first
    ``clips`` recordings in the ``voice_data`` manifests (each read alone, then averaged:
    ``dvae_reference_features``); {} for a DVAE that reads none."""
    if not dvae.cfg.decoder_speaker:
        if voice_data:
            raise UserError("--voice-data is for a speaker-conditioned DVAE; this DVAE reads no reference")
        return {}
    if not voice_data:
        raise UserError("this DVAE's decoder reads reference features of each voice: give --voice-data with "
                        "recordings of the voices")
    if clips < 1:
        raise UserError(f"--voice-clips must be at least 1, got {clips}")
    from xtts_jax.audio.datasets import load_dataset
    from xtts_jax.inference.tts import dvae_reference_features

    utts = [u for part in voice_data.split(",") if part.strip() for u in load_dataset(Path(part.strip()))[0]]
    out = {}
    for name in names:
        paths = [u.audio_path for u in utts if u.speaker == name][:clips]
        if not paths:
            raise UserError(f"--voice-data has no recording of voice {name}")
        out[name] = dvae_reference_features(dvae, paths)
    return out


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tts", required=True, help="tts.safetensors written by recipes/train_tts.py")
    ap.add_argument("--dvae", required=True, help="the DVAE the model's audio tokens come from")
    ap.add_argument("--speakers", required=True, help="a folder of speaker embeddings, NAME.npy")
    ap.add_argument("--out", required=True, help="the folder to write")
    ap.add_argument("--recognizer", help="recognizer.safetensors from recipes/train_recognizer.py: shipped beside "
                    "the model, it lets synthesis keep the best of --candidates sampled sentences")
    ap.add_argument("--reference-strength", type=float,
                    help="a DVAE decoder that reads references: how far their features are pushed from the nearest of "
                         "its training voices when rendering (1: as read; choose it on unheard voices), stored in the packed DVAE")
    ap.add_argument("--voice-data", help="for a speaker-conditioned DVAE: manifest(s), comma-separated, whose "
                    "recordings of each voice give its speakers/NAME.decoder.npy (the decoder's reference features)")
    ap.add_argument("--voice-clips", type=int, default=20, help="recordings a voice's reference features average")
    ap.add_argument("--dtype", default="float16", choices=STORAGE_DTYPES, help="how the weights are stored")
    add_sampling_flags(ap)  # given ones become the checkpoint's recommended sampling (chosen on held-out data)
    args = ap.parse_args(argv)

    import numpy as np

    from xtts_jax.inference.tts import load_tts
    from xtts_jax.models.dvae import load_dvae, save_dvae
    from xtts_jax.weights import export_safetensors, read_safetensors_metadata

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    written = [out / "tts.safetensors", out / "dvae.safetensors", out / "speakers", out / "recognizer.safetensors"]
    inputs = [p for p in (args.tts, args.dvae, args.speakers, args.recognizer) if p]
    if {Path(p).resolve() for p in inputs} & {p.resolve() for p in written}:
        raise UserError(f"--out {out} would overwrite the model being packed; pack into another folder")
    model = load_tts(args.tts)
    dvae = load_dvae(args.dvae)
    if model.config.num_audio_codes != dvae.cfg.num_tokens:
        raise UserError(f"the TTS {args.tts} predicts {model.config.num_audio_codes} audio codes, "
                        f"the DVAE {args.dvae} has {dvae.cfg.num_tokens}; pass the DVAE it was trained with")
    speakers = voices(Path(args.speakers), model.config.speaker_width)
    references = voice_references(dvae, [p.stem for p in speakers], args.voice_data, args.voice_clips)
    steer = None
    if args.reference_strength is not None:
        from xtts_jax.models.dvae import check_strength

        steer = check_strength(args.reference_strength, dvae.cfg)
    recognizer = None
    if args.recognizer:
        from xtts_jax.inference.rerank import Reranker
        from xtts_jax.models.recognizer import load_recognizer

        recognizer = load_recognizer(args.recognizer)
        Reranker(recognizer, model.config)  # it must read this model's codes and text tokens
    if args.candidates is not None:
        from xtts_jax.inference.rerank import check_candidates

        check_candidates(args.candidates, recognizer)

    meta = read_safetensors_metadata(args.tts, "TTS checkpoint")
    chosen = {k: getattr(args, k) for k in (*FIELDS, "candidates") if getattr(args, k) is not None}
    if chosen:
        import json

        from xtts_jax.inference.sampling import SamplingConfig
        from xtts_jax.inference.tts import sampling_defaults

        sampling = {**sampling_defaults(args.tts), **chosen}
        SamplingConfig(**{k: v for k, v in sampling.items() if k != "candidates"})  # validates, with one-line errors
        meta["sampling"] = json.dumps(sampling)
        print(f"recommended sampling: {meta['sampling']}")
    export_safetensors(model, written[0], meta, args.dtype)
    save_dvae(dvae, str(written[1]), decoder_only=True, dtype=args.dtype, reference_strength=steer)
    written[2].mkdir(exist_ok=True)
    for p in speakers:  # validated float32 above, so a copy is the float32 array
        shutil.copyfile(p, written[2] / p.name)

    files = written[:2] + [written[2] / p.name for p in speakers]
    for name, features in references.items():
        np.save(written[2] / f"{name}.decoder.npy", features)
        files.append(written[2] / f"{name}.decoder.npy")
    if recognizer is not None:
        from xtts_jax.models.recognizer import save_recognizer

        save_recognizer(recognizer, str(written[3]), {k: v for k, v in read_safetensors_metadata(args.recognizer).items()
                                                      if k != "recognizer"}, dtype=args.dtype)
        files.append(written[3])
    for f in files:
        print(f"{f.relative_to(out)!s:<32} {f.stat().st_size / 1e6:8.3f} MB")
    print(f"{'total':<32} {sum(f.stat().st_size for f in files) / 1e6:8.3f} MB ({args.dtype}) in {out}")
    return 0


if __name__ == "__main__":
    main()
