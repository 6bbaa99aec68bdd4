"""Compute a speaker's conditioning latents from reference recordings.

    python tools/speaker_embedding.py ref.wav [more.wav ...] -o emb.npy     # the shipped CPU demo model
    python tools/speaker_embedding.py ref.wav --checkpoint runs/tts/tts.safetensors -o emb.npy

writes float32 ``(num_latents, n_embd)`` -- (16, 192) for the demo, (32, 1024) for XTTS-v2: the
perceiver latents of the model's conditioning encoder, averaged over chunks of all references
(4 s each unless the checkpoint's conditioning settings say otherwise). Pass the
file to tools/synthesize.py --speaker. When a speaker encoder lies beside the checkpoint (a
converted XTTS-v2 folder), or the DVAE beside it reads reference features (a speaker-conditioned
DVAE, the shipped model's), the decoder's speaker vector is written too, as ``emb.decoder.npy``,
where synthesize.py looks for it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from xtts_jax.assets import TTS_DEMO  # noqa: E402
from xtts_jax.errors import UserError, run_cli  # noqa: E402


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wavs", nargs="+", help="reference recordings of one speaker")
    ap.add_argument("--checkpoint", default=str(TTS_DEMO),
                    help="tts.safetensors with a conditioning encoder; default: the shipped CPU demo model")
    ap.add_argument("-o", "--output", required=True, help="the .npy to write")
    args = ap.parse_args(argv)
    if not args.output.endswith(".npy"):
        raise UserError(f"output {args.output} must end in .npy")

    import numpy as np

    from xtts_jax import compile_cache
    from xtts_jax.inference.tts import decoder_speaker_from_wavs, load_tts, speaker_from_wavs

    compile_cache.enable()
    model = load_tts(args.checkpoint)
    emb = speaker_from_wavs(model, args.wavs)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    np.save(args.output, emb.astype(np.float32))
    print(f"wrote {args.output}: {emb.shape[0]} x {emb.shape[1]} float32 latents from {len(args.wavs)} recording(s)")
    beside = Path(args.checkpoint).with_name("dvae.safetensors")
    dvae = None
    if beside.is_file():
        from xtts_jax.models.dvae import load_dvae

        dvae = load_dvae(str(beside))
    decoder = decoder_speaker_from_wavs(args.checkpoint, model, args.wavs, dvae)
    if decoder is not None:
        path = args.output[:-len(".npy")] + ".decoder.npy"
        np.save(path, decoder)
        print(f"wrote {path}: the decoder's {decoder.size}-d speaker vector")
    return 0


if __name__ == "__main__":
    main()
