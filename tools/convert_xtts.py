"""Convert an XTTS-v2 model (coqui TTS) into ours.

    python tools/convert_xtts.py --checkpoint XTTS-v2/ -o runs/xtts     # the whole release folder
    python tools/synthesize.py --checkpoint runs/xtts/tts.safetensors --speaker "Ana Florence" \
        --text "Hello there." --language en -o out.wav
    python tools/convert_xtts.py --checkpoint XTTS-v2/model.pth -o runs/xtts/gpt.safetensors  # GPT only

With a folder (or a ``model.pth`` with ``vocab.json`` beside it) as output, everything
``synthesize.py`` needs is written (``xtts_jax/convert/xtts_folder.py``): the GPT with its
conditioning encoder, tokenizer and sampling settings (``tts.safetensors``), the HiFiGAN decoder
(``vocoder.safetensors``), the speaker encoder (``speaker_encoder.safetensors``) and the built-in
voices of ``speakers_xtts.pth`` (``speakers/``). With a ``.safetensors`` output only the ``gpt.*``
tensors are converted (``xtts_jax/convert/xtts.py``). The config is inferred from tensor shapes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from xtts_jax.errors import UserError, run_cli  # noqa: E402


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="an XTTS-v2 folder, or its model.pth")
    ap.add_argument("-o", "--output", required=True,
                    help="a folder (everything synthesize.py needs), or a .safetensors (the GPT only)")
    args = ap.parse_args(argv)
    source = Path(args.checkpoint)
    if not source.exists():
        raise UserError(f"checkpoint {args.checkpoint} does not exist")
    if not args.output.endswith(".safetensors"):
        if Path(args.output).is_file():
            raise UserError(f"output {args.output} is a file; give a folder or a .safetensors path")
        from xtts_jax.convert.xtts_folder import convert_xtts_folder

        summary = convert_xtts_folder(source, args.output)
        print(f"wrote {args.output}: tts.safetensors, vocoder.safetensors, speaker_encoder.safetensors"
              + (f", {len(summary['voices'])} voices in speakers/" if summary["voices"] else ""))
        return 0
    if source.is_dir():
        source = source / "model.pth"
        if not source.is_file():
            raise UserError(f"{args.checkpoint} holds no model.pth")

    from xtts_jax.convert.xtts import describe, load_xtts_gpt
    from xtts_jax.models.tts import save_tts

    model = load_xtts_gpt(source)
    print(describe(model.config))
    save_tts(model, args.output, {"source": f"XTTS-v2 gpt.* of {source.name}"})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    main()
