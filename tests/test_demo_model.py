"""The shipped default model (xtts_jax/assets/tts_demo): small enough, complete, open-vocabulary,
1024-d voices, and intelligible.

Intelligibility is scored by Whisper tiny.en (offline, the eval extra) on held-out sentences the
model never heard; the same recogniser on audio from random codes is the control that shows the
score can fail.
"""

import json

import jax
import numpy as np
import pytest

from xtts_jax.assets import TTS_DEMO
from xtts_jax.inference import tts as P
from xtts_jax.inference.sampling import SamplingConfig
from xtts_jax.inference.vocoder import Vocoder
from xtts_jax.models.dvae import load_dvae

DEMO = TTS_DEMO.parent


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((DEMO / "card.json").read_text())


@pytest.fixture(scope="module")
def synth():
    """As tools/synthesize.py builds it: the shipped recogniser keeps the best of the checkpoint's candidates."""
    from xtts_jax.inference.rerank import recognizer_beside

    model = P.load_tts(DEMO / "tts.safetensors")
    dvae = load_dvae(str(DEMO / "dvae.safetensors"))
    n = P.candidates_default(TTS_DEMO)
    return P.Synthesizer(model, Vocoder.griffin_lim(dvae.cfg.mel), dvae, recognizer=recognizer_beside(TTS_DEMO, n),
                         candidates=n)


def test_demo_is_small_and_complete(card, synth):
    weights = sum(p.stat().st_size for p in DEMO.glob("*.safetensors"))
    assert weights <= 20 * 2**20, f"{weights / 2**20:.1f} MiB of weights"
    assert (DEMO / "MODEL_CARD.md").is_file()
    speakers = sorted(p.stem for p in (DEMO / "speakers").glob("*.npy") if not p.stem.endswith(".decoder"))
    assert speakers == sorted(card["speakers"]) and len(speakers) >= 2
    d = synth.model.config.speaker_width
    assert synth.dvae.cfg.decoder_speaker  # the decoder reads each voice's reference features
    # ... steered from the nearest of its training voices (models/dvae.py: steer_reference), which it keeps
    assert synth.dvae.cfg.reference_strength > 1 and synth.dvae.reference_voices.shape == (27, 160)
    for name in speakers:
        emb = P.load_speaker_embedding(DEMO / "speakers" / f"{name}.npy", d)
        assert emb.shape[1] == d
        features = P.load_speaker_embedding(DEMO / "speakers" / f"{name}.decoder.npy", synth.dvae.cfg.speaker_dim)
        assert features.shape == (1, 160)
    # any English sentence is read: numbers, abbreviations, capitals, accents and unknown words
    for text in [*card["heldout_sentences"], "On 12/05 Dr. Zyxqwv paid $3.50 for a CAFÉ au lait at 9:30am!"]:
        assert len(P.text_tokens(text, synth.model.config)) > 2
    assert synth.model.config.tokenizer == "phonemes"
    assert synth.candidates > 1 and synth.recognizer is not None  # best of N, as the model card reports


def test_default_model_takes_1024d_speaker_vectors(synth, tmp_path):
    """The mission's interface: (1024,) and (K, 1024) float32 speaker vectors, projected inside."""
    assert synth.model.config.speaker_width == 1024 > synth.model.config.gpt.n_embd  # a narrower model projects
    rng = np.random.default_rng(0)
    one = rng.standard_normal(1024).astype(np.float32)
    several = rng.standard_normal((3, 1024)).astype(np.float32)
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=4)
    for emb in (one, several):
        np.save(tmp_path / "v.npy", emb)
        cond = P.load_speaker_embedding(tmp_path / "v.npy", 1024)
        codes = synth.codes([P.text_tokens("Hello there.", synth.model.config)], [cond], jax.random.key(0), sampling)[0]
        assert 0 < len(codes) <= 4


def test_demo_speaks_held_out_sentences_intelligibly(card, synth):
    from xtts_jax.eval.asr import Whisper, error_rates

    texts = card["heldout_sentences"][:4]
    voices = card["speakers"][:2]
    d = synth.model.config.speaker_width
    conds = [P.load_speaker_embedding(DEMO / "speakers" / f"{voices[i % 2]}.npy", d) for i in range(len(texts))]
    sampling = SamplingConfig(**P.sampling_defaults(DEMO / "tts.safetensors"), max_new_tokens=synth.max_new_tokens())
    waves = synth.synthesize(texts, conds, jax.random.key(0), sampling)
    asr = Whisper()
    heard = [asr(w, synth.sample_rate) for w in waves]
    wer = error_rates(texts, heard)["wer"]
    # control: the same pipeline from random codes of the same lengths is not speech
    rng = np.random.default_rng(0)
    noise = [P.render_dvae_codes(synth.dvae, synth.vocoder, rng.integers(0, 1024, len(w) // 1024).tolist())
             for w in waves]
    control = error_rates(texts, [asr(w, synth.sample_rate) for w in noise])["wer"]
    assert control >= 0.9, control
    assert wer <= card["test_wer_limit"] and wer <= control - 0.3, (wer, control, heard)
    print(f"demo WER {wer:.3f}, random-code control {control:.3f}")
