"""tools/evaluate_tts.py end to end on a manifest written here: bad rows are skipped and counted,
the outputs are written, and the speaker metric tells voices apart.

The "recordings" are the shipped demo model speaking in two of its voices (no apt package needed);
the same voice must score higher similarity than the other voice.
"""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from tests._scripts import load_script
from xtts_jax.audio.io import save_audio
from xtts_jax.assets import TTS_DEMO
from xtts_jax.inference import tts as P
from xtts_jax.inference.sampling import SamplingConfig
from xtts_jax.inference.vocoder import Vocoder
from xtts_jax.models.dvae import load_dvae

DEMO = TTS_DEMO.parent
TEXTS = ["One day, Lucy wanted to bake a cake with Anna.", "Anna and Max were best friends forever.",
         "They learned that it is fun to play together."]
VOICES = ["flite_awb", "flite_slt"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Three utterances in each of two demo voices, plus a missing, an empty-text and an unreadable row."""
    root = tmp_path_factory.mktemp("eval_corpus")
    model = P.load_tts(DEMO / "tts.safetensors")
    dvae = load_dvae(str(DEMO / "dvae.safetensors"))
    synth = P.Synthesizer(model, Vocoder.griffin_lim(dvae.cfg.mel), dvae)
    sampling = SamplingConfig(**P.sampling_defaults(DEMO / "tts.safetensors"), max_new_tokens=synth.max_new_tokens())
    rows = []
    for v in VOICES:
        cond = P.load_speaker_embedding(DEMO / "speakers" / f"{v}.npy", model.config.speaker_width)
        waves = synth.synthesize(TEXTS, [cond] * len(TEXTS), jax.random.key(len(rows)), sampling)
        for i, (t, w) in enumerate(zip(TEXTS, waves)):
            save_audio(root / f"{v}_{i}.wav", w, synth.sample_rate)
            rows.append({"audio_path": f"{v}_{i}.wav", "text": t, "speaker": v})
    (root / "garbage.wav").write_text("this is not audio")
    rows += [{"audio_path": "nowhere.wav", "text": "Missing file.", "speaker": VOICES[0]},
             {"audio_path": f"{VOICES[1]}_0.wav", "text": "  ", "speaker": VOICES[1]},
             {"audio_path": "garbage.wav", "text": "Unreadable.", "speaker": VOICES[0]}]
    (root / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    return root


def test_evaluate_tts_skips_bad_rows_and_tells_voices_apart(corpus, tmp_path):
    tool = load_script("evaluate_tts", "tools/evaluate_tts.py")
    (tmp_path / "gen").mkdir()
    # a "generated" folder: the other voice's audio for each utterance, one file missing
    for v, other in zip(VOICES, VOICES[::-1]):
        for i in range(2):
            (tmp_path / "gen" / f"{v}_{i}.wav").write_bytes((corpus / f"{other}_{i}.wav").read_bytes())
    with pytest.raises(SystemExit) as e:
        tool.main(["--manifest", str(corpus / "m.jsonl"), "--rungs", "recording,wavs", "--wavs", str(tmp_path / "gen"),
                   "--out", str(tmp_path / "out"), "--timed", "0"])
    assert e.value.code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert sorted(s["reason"] for s in report["skipped"]) == [
        "empty text", "missing audio file", "unparsable manifest row", "unreadable audio file"]
    assert report["utterances"] == 6 and report["speakers"] == VOICES
    assert (tmp_path / "out" / "report.png").stat().st_size > 1000
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| recording |" in md and "Skipped 4 manifest rows" in md
    assert report["candidates"] is None and "candidates" not in md  # no model rung: nothing sampled
    from xtts_jax.eval.report import markdown

    assert "keeps the best of 4 sampled candidates" in markdown({**report, "candidates": 4})
    assert report["reference_strength"] is None and "strength" not in md  # no DVAE read: nothing steered
    assert "reads each reference at strength 2" in markdown({**report, "reference_strength": 2.0})

    rec = report["rungs"]["recording"]
    for r in rec["records"]:  # each clip is nearer to another clip of its own voice than to the other voice
        assert r["similarity"] > r["other"] + 0.1, r
        assert r["nearest_ok"]
    assert rec["overall"]["nearest_voice"] == 1.0
    assert all(r["transcript"] for r in rec["records"])

    swapped = report["rungs"]["wavs"]  # the wrong voice everywhere, and the third file of each voice missing
    assert swapped["overall"]["failed"] == 2
    assert swapped["overall"]["nearest_voice"] == 0.0
    scored = [r for r in swapped["records"] if "failure" not in r]
    assert np.mean([r["similarity"] for r in scored]) < rec["overall"]["similarity"] - 0.1
    assert all(r["wer"] == 1.0 for r in swapped["records"] if "failure" in r)


def test_evaluate_tts_bad_usage_is_one_line(corpus, tmp_path, capsys):
    tool = load_script("evaluate_tts", "tools/evaluate_tts.py")
    for argv, msg in ((["--rungs", "model"], "needs --checkpoint"), (["--rungs", "ears"], "unknown rung"),
                      (["--checkpoint", str(tmp_path)], "is not a file"), (["--per-speaker", "0"], ">= 1"),
                      (["--speakers", "nobody"], "no usable utterance")):
        with pytest.raises(SystemExit) as e:
            tool.main(["--manifest", str(corpus / "m.jsonl"), "--out", str(tmp_path / "o"), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and msg in err[-1], (argv, err)


def test_voice_pool_joins_the_nearest_voice_test(corpus, tmp_path):
    """Evaluating one voice alone, its outputs are trivially "nearest" to it; with the other voice in
    the pool, outputs that are really the other voice's audio are caught, its own recordings not."""
    tool = load_script("evaluate_tts", "tools/evaluate_tts.py")
    (tmp_path / "gen").mkdir()
    for i in range(3):
        (tmp_path / "gen" / f"{VOICES[0]}_{i}.wav").write_bytes((corpus / f"{VOICES[1]}_{i}.wav").read_bytes())
    nearest = {}
    for pool in ([], ["--voice-pool", str(corpus / "m.jsonl"), "--pool-clips", "2"]):
        out = tmp_path / f"out{len(pool)}"
        with pytest.raises(SystemExit) as e:
            tool.main(["--manifest", str(corpus / "m.jsonl"), "--speakers", VOICES[0], "--rungs", "recording,wavs",
                       "--wavs", str(tmp_path / "gen"), "--out", str(out), "--timed", "0", *pool])
        assert e.value.code == 0
        report = json.loads((out / "report.json").read_text())
        nearest[bool(pool)] = {r: report["rungs"][r]["overall"]["nearest_voice"] for r in ("recording", "wavs")}
        assert report["voice_pool"] == ([VOICES[1]] if pool else None)
        said = f"the nearest-voice test also counts 1 other voices ({VOICES[1]})"
        assert (said in (out / "report.md").read_text()) == bool(pool)
    assert nearest[False] == {"recording": 1.0, "wavs": 1.0}
    assert nearest[True] == {"recording": 1.0, "wavs": 0.0}


def test_dvae_rung_of_a_speaker_decoder_reads_each_items_reference(corpus):
    """A speaker-conditioned DVAE decodes each recording's codes with the features of the item's
    reference clip (what the model rung gets), not unconditioned."""
    import dataclasses

    import equinox as eqx
    import jax.numpy as jnp

    from xtts_jax.audio.io import load_audio
    from xtts_jax.eval import rungs as R
    from xtts_jax.models.dvae import DVAE, PRESETS, dvae_mel

    cfg = dataclasses.replace(PRESETS["tiny"], decoder_speaker=True)
    dvae = DVAE(cfg, jax.random.key(0))
    dvae = eqx.tree_at(lambda m: m.speaker_film.out.weight, dvae,
                       0.05 * jax.random.normal(jax.random.key(1), dvae.speaker_film.out.weight.shape))
    items, _ = R.select(corpus / "m.jsonl", 2, [VOICES[0]])
    vocoder = Vocoder.griffin_lim(cfg.mel)
    got = R.dvae_round_trip(items, dvae, vocoder).waves
    for it, wave in zip(items, got):
        audio = load_audio(it.audio_path, cfg.mel.sample_rate)
        codes = np.asarray(dvae.encode(jnp.asarray(dvae_mel(audio, cfg, bucket_tokens=16))))[: cfg.n_tokens(len(audio))]
        want = P.render_dvae_codes(dvae, vocoder, codes.tolist(), P.dvae_reference_features(dvae, [it.reference_path]))
        unconditioned = P.render_dvae_codes(dvae, vocoder, codes.tolist())
        np.testing.assert_allclose(wave, want, atol=1e-5)
        assert np.abs(wave - unconditioned).max() > 1e-4
    # steered: each reference pushed from the nearest training voice, as the model rung's
    from xtts_jax.models.dvae import steer_reference, with_reference_voices

    refs = [P.dvae_reference_features(dvae, [it.reference_path]) for it in items]
    steered = with_reference_voices(dvae, np.stack([refs[0] - 0.1, refs[0] + 3.0]))
    got = R.dvae_round_trip(items, steered, vocoder, reference_strength=2.0).waves
    for it, wave, ref in zip(items, got, refs):
        audio = load_audio(it.audio_path, cfg.mel.sample_rate)
        codes = np.asarray(dvae.encode(jnp.asarray(dvae_mel(audio, cfg, bucket_tokens=16))))[: cfg.n_tokens(len(audio))]
        want = P.render_dvae_codes(dvae, vocoder, codes.tolist(), steer_reference(ref, steered, 2.0))
        np.testing.assert_allclose(wave, want, atol=1e-5)
