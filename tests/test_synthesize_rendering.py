"""tools/synthesize.py on a long text with a decoder that overshoots: rendering is reported on
stderr as it goes, and the file it writes has no sample at full scale (it used to be clipped)."""

import numpy as np
import pytest
import soundfile as sf

from _scripts import load_script
from test_tts_inference import random_dvae
from xtts_jax.inference.tts import random_tts, save_tts
from xtts_jax.inference.vocoder import Vocoder
from xtts_jax.models.dvae import save_dvae
from xtts_jax.models.tts import get_config


def test_long_text_shows_rendering_and_is_never_clipped(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    save_tts(random_tts(get_config("tiny"), seed=1, std=0.08), str(tmp_path / "tts.safetensors"))
    save_dvae(random_dvae(), str(tmp_path / "dvae.safetensors"))
    np.save(tmp_path / "emb.npy", rng.standard_normal((4, 64)).astype(np.float32))
    decode = Vocoder.decode
    monkeypatch.setattr(Vocoder, "decode", lambda self, *a, **k: 20.0 * decode(self, *a, **k))  # far past full scale
    tool = load_script("synthesize_tool", "tools/synthesize.py")
    text = " ".join(["The cat sat.", "It was warm."] * 6)
    with pytest.raises(SystemExit) as done:
        tool.main(["--checkpoint", str(tmp_path / "tts.safetensors"), "--speaker", str(tmp_path / "emb.npy"),
                   "--text", text, "--max-new-tokens", "6", "--batch-size", "4", "-o", str(tmp_path / "out.wav")])
    assert done.value.code == 0
    shown = [line.split(",")[0] for line in capsys.readouterr().err.splitlines() if line.startswith("rendered")]
    assert shown == ["rendered 4/12 sentences", "rendered 8/12 sentences", "rendered 12/12 sentences"]
    wave, _ = sf.read(tmp_path / "out.wav", dtype="int16")
    assert np.abs(wave.astype(np.int32)).max() < 32767  # 16-bit full scale: not one clipped sample
    assert np.abs(wave).max() > 0.9 * 32767  # scaled to just under it, not to silence
