"""Files shipped inside the package: the CPU demo model (``tts_demo/``, see its MODEL_CARD.md)."""

from pathlib import Path

# The tools' default checkpoint: synthesize.py and speaker_embedding.py work out of the box with it.
TTS_DEMO = Path(__file__).resolve().parent / "tts_demo" / "tts.safetensors"
