"""Convert the GPT of an XTTS-v2 checkpoint into our TTS safetensors.

    python tools/convert_xtts.py --checkpoint XTTS-v2/model.pth -o runs/xtts/tts.safetensors

reads the ``gpt.*`` tensors of coqui's ``model.pth`` (text and audio embeddings and positions,
the 30 GPT-2 blocks, final norm, text and audio heads, conditioning encoder and perceiver), infers
the config from their shapes, prints it, and writes weights + config for ``load_tts``. The
HiFiGAN decoder in the same file is read by ``xtts_jax.convert.hifigan``; XTTS-v2's text needs its
own 6,681-token tokenizer (``vocab.json``), which is not converted here.
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
    ap.add_argument("--checkpoint", required=True, help="XTTS-v2 model.pth (coqui TTS)")
    ap.add_argument("-o", "--output", required=True, help="the .safetensors to write")
    args = ap.parse_args(argv)
    if not args.output.endswith(".safetensors"):
        raise UserError(f"output {args.output} must end in .safetensors")
    if not Path(args.checkpoint).is_file():
        raise UserError(f"checkpoint {args.checkpoint} does not exist")

    from xtts_jax.convert.xtts import describe, load_xtts_gpt
    from xtts_jax.inference.tts import save_tts

    model = load_xtts_gpt(args.checkpoint)
    print(describe(model.config))
    save_tts(model, args.output, {"source": f"XTTS-v2 gpt.* of {Path(args.checkpoint).name}"})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    main()
