"""What a user of tools/synthesize.py waits for, on this machine.

    python bench/bench_synthesize.py                                  # the shipped default model
    python bench/bench_synthesize.py --checkpoint runs/tts/tts.safetensors --speaker emb.npy

1. A cold process: ``synthesize.py`` run as a user runs it (import, load, compile, speak, write),
   with the persistent compilation cache off, then empty, then filled by the run before.
2. Warm, in one process: one sentence at a time, the seconds to the whole waveform and its
   real-time factor (the best of the checkpoint's candidates, or ``--candidates``), and the seconds
   to the first streamed audio (streaming speaks the first candidate: it cannot wait for the others).
Medians over ``--repeats``; the machine's load is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xtts_jax.assets import TTS_DEMO  # noqa: E402

SENTENCE = "Hello! The 7:45 train to Boston leaves from platform 2 on Friday."  # the README's main command


def cold(checkpoint: str, speaker: str, text: str, cache: str, candidates: int | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "XTTS_JAX_CACHE": cache}
        more = ["--candidates", str(candidates)] if candidates else []
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(ROOT / "tools/synthesize.py"), "--checkpoint", checkpoint,
                               "--speaker", speaker, "--text", text, "-o", str(Path(tmp) / "o.wav"), *more],
                              capture_output=True, text=True, env=env)
        if proc.returncode:
            sys.exit(proc.stderr.strip())
        return time.perf_counter() - t0


def warm(checkpoint: str, speaker: str, text: str, repeats: int, candidates: int | None) -> dict:
    import jax

    from xtts_jax.inference import tts as pipeline
    from xtts_jax.inference.flags import candidates_from_flags, sampling_from_flags
    from xtts_jax.inference.rerank import recognizer_beside
    from xtts_jax.inference.vocoder import Vocoder
    from xtts_jax.models.dvae import load_dvae

    model = pipeline.load_tts(checkpoint)
    dvae = load_dvae(str(Path(checkpoint).with_name("dvae.safetensors")))
    flags = argparse.Namespace(temperature=None, top_k=None, top_p=None, repetition_penalty=None, candidates=candidates)
    n = candidates_from_flags(flags, checkpoint)
    synth = pipeline.Synthesizer(model, Vocoder.griffin_lim(dvae.cfg.mel), dvae,
                                 recognizer=recognizer_beside(checkpoint, n), candidates=n)
    path = speaker if speaker.endswith(".npy") else str(Path(checkpoint).with_name("speakers") / f"{speaker}.npy")
    cond = pipeline.load_speaker_embedding(path, model.config.speaker_width)
    sampling = sampling_from_flags(flags, checkpoint, synth.max_new_tokens())
    whole, first, rtf = [], [], []
    for i in range(repeats + 1):  # the first round compiles
        t0 = time.perf_counter()
        (wave,) = synth.synthesize([text], [cond], jax.random.key(i), sampling, batch_size=1)
        t1 = time.perf_counter()
        for piece in synth.stream(text, cond, jax.random.key(i), sampling):
            if len(piece):
                break
        t2 = time.perf_counter()
        if i:
            whole.append(t1 - t0)
            rtf.append((t1 - t0) / (len(wave) / synth.sample_rate))
            first.append(t2 - t1)
    return {"candidates": n, "seconds of audio": len(wave) / synth.sample_rate, "whole sentence s": statistics.median(whole),
            "real-time factor": statistics.median(rtf), "first streamed audio s": statistics.median(first)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(TTS_DEMO))
    ap.add_argument("--speaker", default="flite_slt", help="a voice beside the checkpoint or an .npy")
    ap.add_argument("--text", default=SENTENCE)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--candidates", type=int, help="per sentence (default: the checkpoint's); streaming speaks one")
    args = ap.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f}; checkpoint {args.checkpoint}")
    with tempfile.TemporaryDirectory() as cache:
        rows = [("cold process, cache off", statistics.median(cold(args.checkpoint, args.speaker, args.text, "off", args.candidates)
                                                             for _ in range(args.repeats))),
                ("cold process, empty cache", cold(args.checkpoint, args.speaker, args.text, cache, args.candidates)),
                ("cold process, cache filled", statistics.median(cold(args.checkpoint, args.speaker, args.text, cache, args.candidates)
                                                                for _ in range(args.repeats)))]
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} s |")
    for name, value in warm(args.checkpoint, args.speaker, args.text, args.repeats, args.candidates).items():
        print(f"| warm: {name} | {value:.3f} |")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
