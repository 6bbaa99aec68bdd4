"""How intelligible is the speech? Word error rate of an offline recogniser, rung by rung.

    python tools/eval_intelligibility.py --manifest data/speech/eval.jsonl \\
        --checkpoint runs/tts/tts.safetensors --per-speaker 10

For the first ``--per-speaker`` utterances of each speaker in a manifest (audio_path, text,
speaker), PocketSphinx transcribes (1) the recording, (2) its DVAE round trip (tokens -> DVAE
decoder -> Griffin-Lim), the ceiling of any model on those tokens, and (3) with ``--checkpoint``,
the TTS model speaking the same text, conditioned on a *different* clip of the same speaker.
Prints WER per speaker and rung; ``--json`` keeps every transcript. Needs the ``eval`` extra.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from xtts_jax.errors import UserError, run_cli  # noqa: E402
from xtts_jax.inference.flags import add_sampling_flags, sampling_from_flags  # noqa: E402


def pick(rows: list[dict], per_speaker: int, speakers: list[str] | None) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for r in rows:
        if speakers is None or r["speaker"] in speakers:
            by.setdefault(r["speaker"], []).append(r)
    if speakers and (missing := sorted(set(speakers) - set(by))):
        raise UserError(f"speaker(s) {', '.join(missing)} do not occur in the manifest")
    return {s: rs[:per_speaker] for s, rs in sorted(by.items())}


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", required=True, help="a JSONL manifest (audio_path, text, speaker)")
    ap.add_argument("--checkpoint", help="tts.safetensors; without it only the recording and DVAE rungs")
    ap.add_argument("--dvae", help="dvae.safetensors (default: beside the checkpoint)")
    ap.add_argument("--per-speaker", type=int, default=8)
    ap.add_argument("--speakers", help="comma-separated speakers (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write every transcript and WER here")
    add_sampling_flags(ap)
    args = ap.parse_args(argv)

    manifest = Path(args.manifest)
    if not manifest.is_file():
        raise UserError(f"manifest {manifest} does not exist")
    if args.per_speaker < 1:
        raise UserError(f"--per-speaker {args.per_speaker} must be >= 1")
    dvae_path = args.dvae or (str(Path(args.checkpoint).with_name("dvae.safetensors")) if args.checkpoint else None)
    if not dvae_path or not Path(dvae_path).is_file():
        raise UserError(f"DVAE weights {dvae_path} not found; pass --dvae")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise UserError(f"TTS checkpoint {args.checkpoint} does not exist")

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    from xtts_jax.audio.io import load_audio
    from xtts_jax.eval.intelligibility import Recognizer, word_error_rate
    from xtts_jax.inference import tts as pipeline
    from xtts_jax.inference.vocoder import Vocoder
    from xtts_jax.models.dvae import dvae_mel, load_dvae

    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    for r in rows:  # manifest paths are relative to the manifest's folder
        if not Path(r["audio_path"]).is_absolute():
            r["audio_path"] = str(manifest.parent / r["audio_path"])
    speakers = [s.strip() for s in args.speakers.split(",")] if args.speakers else None
    model = pipeline.load_tts(args.checkpoint) if args.checkpoint else None
    if model is not None:  # a compact-vocabulary model cannot read every sentence: skip and say so
        known = []
        for r in rows:
            try:
                pipeline.text_tokens(r["text"], model.config)
                known.append(r)
            except UserError:
                pass
        if len(known) < len(rows):
            print(f"skipping {len(rows) - len(known)} of {len(rows)} utterances with words outside the model's vocabulary")
        rows = known
    chosen = pick(rows, args.per_speaker, speakers)
    asr = Recognizer()
    dvae = load_dvae(dvae_path)
    vocoder = Vocoder.griffin_lim(dvae.cfg.mel)
    synth = pipeline.Synthesizer(model, vocoder, dvae) if model is not None else None
    sampling = sampling_from_flags(args, args.checkpoint, synth.max_new_tokens()) if synth else None

    encode = eqx.filter_jit(lambda d, m: d.encode(m))
    key = jax.random.key(args.seed)
    rungs = ["recording", "dvae"] + (["tts"] * (model is not None))
    report: dict = {"per_speaker": {}, "transcripts": [],
                    "sampling": {k: getattr(sampling, k) for k in ("temperature", "top_k", "top_p", "repetition_penalty")}
                    if sampling else None, "seed": args.seed}
    t0 = time.perf_counter()
    for speaker, utts in chosen.items():
        refs, hyps = [u["text"] for u in utts], {k: [] for k in rungs}
        pool = [r for r in rows if r["speaker"] == speaker]
        for u in utts:
            wave = load_audio(u["audio_path"], dvae.cfg.mel.sample_rate)
            hyps["recording"].append(asr(wave, dvae.cfg.mel.sample_rate))
            codes = np.asarray(encode(dvae, jnp.asarray(dvae_mel(wave, dvae.cfg))))
            codes = codes[: dvae.cfg.n_tokens(len(wave))].tolist()
            hyps["dvae"].append(asr(pipeline.render_dvae_codes(dvae, vocoder, codes), vocoder.sample_rate))
        if synth is not None:  # each text in the voice of another clip of its speaker, in one batch
            others = [next((r for r in pool if r["audio_path"] != u["audio_path"]), u) for u in utts]
            conds = [pipeline.speaker_from_wavs(model, [o["audio_path"]]) for o in others]
            key, sub = jax.random.split(key)
            hyps["tts"] = [asr(w, synth.sample_rate) for w in synth.synthesize(refs, conds, sub, sampling)]
        report["per_speaker"][speaker] = {k: word_error_rate(refs, hyps[k]) for k in rungs}
        report["transcripts"] += [{"speaker": speaker, "text": t, **{k: hyps[k][i] for k in rungs}}
                                  for i, t in enumerate(refs)]
        print(f"{speaker:<16} " + "  ".join(f"{k} {report['per_speaker'][speaker][k]:.3f}" for k in rungs), flush=True)
    every = report["transcripts"]
    report["overall"] = {k: word_error_rate([t["text"] for t in every], [t[k] for t in every]) for k in rungs}
    report["utterances"] = len(every)
    print(f"{'all':<16} " + "  ".join(f"{k} {report['overall'][k]:.3f}" for k in rungs)
          + f"   ({len(every)} utterances, {time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    main()
