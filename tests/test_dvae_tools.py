"""tools/encode_audio.py and recipes/train_dvae.py: token files from a manifest, and one DVAE
training step as the shared trainer runs it."""

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from _scripts import load_script
from xtts_jax.audio.datasets import Utterance, write_manifest
from xtts_jax.audio.mel import compute_mel_stats, log_mel
from xtts_jax.errors import UserError
from xtts_jax.models.dvae import DVAE, PRESETS, dvae_mel, load_dvae, save_dvae, update_codebook
from xtts_jax.train.optim import TrainConfig, make_optimizer


encode_audio = load_script("encode_audio", "tools/encode_audio.py")
train_dvae = load_script("train_dvae", "recipes/train_dvae.py")


def _wave(seconds, f0, seed):
    t = np.arange(int(seconds * 22050)) / 22050
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * f0 * t * (1 + t)) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_model():
    waves = [_wave(1.0, 220, 0), _wave(0.8, 500, 1)]
    stats = compute_mel_stats(log_mel(w) for w in waves)
    import dataclasses

    return DVAE(dataclasses.replace(PRESETS["tiny"], mel_stats=stats), jax.random.key(0))


def test_save_load_round_trip_and_errors(tmp_path, tiny_model):
    path = tmp_path / "dvae.safetensors"
    save_dvae(tiny_model, str(path))
    back = load_dvae(str(path))
    assert back.cfg == tiny_model.cfg
    for a, b in zip(jax.tree.leaves(eqx.filter(tiny_model, eqx.is_array)), jax.tree.leaves(eqx.filter(back, eqx.is_array))):
        np.testing.assert_array_equal(a, b)
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(2, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="holds no DVAE config"):
        load_dvae(str(tmp_path / "other.safetensors"))


def test_encode_audio_writes_tokens_and_skips_broken_files(tmp_path, tiny_model, capsys):
    save_dvae(tiny_model, str(tmp_path / "dvae.safetensors"))
    waves = {"a.wav": _wave(1.3, 220, 2), "b.flac": _wave(0.7, 440, 3)}
    for name, w in waves.items():
        sf.write(tmp_path / name, w, 22050)
    (tmp_path / "broken.wav").write_bytes(b"RIFF nope")
    utts = [Utterance(tmp_path / n, f"text {n}", "spk") for n in (*waves, "broken.wav", "missing.wav")]
    manifest = write_manifest(utts, tmp_path / "m.jsonl")
    with pytest.raises(SystemExit) as e:
        encode_audio.main(["--dvae", str(tmp_path / "dvae.safetensors"), "--data", str(manifest),
                           "--out", str(tmp_path / "tok" / "train")])
    assert e.value.code == 0
    rows = [json.loads(line) for line in (tmp_path / "tok" / "train.jsonl").read_text().splitlines()]
    tokens = np.fromfile(tmp_path / "tok" / "train.bin", np.uint16)
    summary = json.loads((tmp_path / "tok" / "train.json").read_text())
    assert [Path(r["audio_path"]).name for r in rows] == ["a.wav", "b.flac"]
    assert summary["tokens"] == tokens.size == sum(r["length"] for r in rows)
    assert summary["dataset_report"]["unreadable"] == 1 and summary["dataset_report"]["missing_file"] == 1
    assert summary["tokens_per_second"] == pytest.approx(22050 / 1024)
    for r, w in zip(rows, waves.values()):
        assert r["length"] == int(np.ceil((1 + len(w) // 256) / 4))  # one token per 1,024 samples
        direct = np.asarray(tiny_model.encode(jnp.asarray(dvae_mel(w, tiny_model.cfg))))
        got = tokens[r["offset"] : r["offset"] + r["length"]]
        # bucket padding may only touch the tokens whose receptive field reaches the end
        np.testing.assert_array_equal(got[:-3], direct[: r["length"] - 3])


def test_encode_audio_errors_name_the_problem(tmp_path, tiny_model, capsys):
    with pytest.raises(SystemExit) as e:
        encode_audio.main(["--dvae", str(tmp_path / "none.safetensors"), "--data", "x", "--out", "y"])
    assert e.value.code == 2 and "do not exist" in capsys.readouterr().err
    save_dvae(tiny_model, str(tmp_path / "dvae.safetensors"))
    manifest = write_manifest([Utterance(tmp_path / "gone.wav", "hi", "s")], tmp_path / "m.jsonl")
    with pytest.raises(SystemExit) as e:
        encode_audio.main(["--dvae", str(tmp_path / "dvae.safetensors"), "--data", str(manifest), "--out", "y"])
    assert e.value.code == 2 and "missing_file 1" in capsys.readouterr().err


def test_encode_audio_per_speaker_encodes_a_seeded_subset(tmp_path, tiny_model, capsys):
    save_dvae(tiny_model, str(tmp_path / "dvae.safetensors"))
    utts = []
    for s, count in (("b", 5), ("a", 2)):
        for i in range(count):
            sf.write(tmp_path / f"{s}{i}.wav", _wave(0.6, 200 + 40 * i, i), 22050)
            utts.append(Utterance(tmp_path / f"{s}{i}.wav", f"{s} {i}", s))
    manifest = write_manifest(utts, tmp_path / "m.jsonl")

    def encode(out, *extra):
        with pytest.raises(SystemExit) as e:
            encode_audio.main(["--dvae", str(tmp_path / "dvae.safetensors"), "--data", str(manifest),
                               "--out", str(tmp_path / out), *extra])
        return e.value.code

    assert encode("three", "--per-speaker", "3") == 0
    texts = [json.loads(line)["text"] for line in (tmp_path / "three.jsonl").read_text().splitlines()]
    assert [t.split()[0] for t in texts] == ["a", "a", "b", "b", "b"]  # all of a, three of b, a before b
    assert len(set(texts)) == 5
    assert encode("again", "--per-speaker", "3") == 0  # seeded: the same choice again
    assert (tmp_path / "again.jsonl").read_text() == (tmp_path / "three.jsonl").read_text()
    assert encode("bad", "--per-speaker", "-1") == 2 and "must be >= 0" in capsys.readouterr().err


def test_train_step_moves_codebook_by_ema_not_by_optimizer(tiny_model):
    task = train_dvae.DVAETask(tiny_model.cfg)
    params, static = eqx.partition(tiny_model, eqx.is_array)
    opt = make_optimizer(TrainConfig(lr=1e-2, warmup_steps=0, weight_decay=0.5), tiny_model)
    state = {"params": params, "opt_state": opt.init(params), "step": jnp.zeros((), jnp.int32),
             "key": jax.random.key(1)}
    segments = train_dvae.WaveSegments([_wave(1.0, 220, 4), _wave(0.3, 700, 5)], 2, 4096, seed=3)
    batch = jnp.asarray(segments(7))
    np.testing.assert_array_equal(segments(7), batch)  # a batch depends only on (seed, step)
    key = jax.random.key(2)
    step = jax.jit(lambda s, b, k: task.train_step(s, b, k, static=static, optimizer=opt))
    new, metrics = step(state, batch, key)
    assert set(metrics) >= {"loss", "mel_l1", "perplexity", "usage", "restarted", "grad_norm"}
    # the codebook is exactly the EMA/restart of the old one; weight decay never touched it
    from xtts_jax.models.dvae import dvae_loss

    expected, _ = eqx.filter_jit(lambda m: update_codebook(m, dvae_loss(m, *task._mels(batch))[1], key))(tiny_model)
    np.testing.assert_allclose(new["params"].codebook.cluster_size, expected.codebook.cluster_size, atol=1e-6)
    np.testing.assert_allclose(new["params"].codebook.embed, expected.codebook.embed, atol=1e-5)
    assert float(jnp.abs(new["params"].encoder[0].weight - params.encoder[0].weight).max()) > 0
    assert int(new["step"]) == 1
    loss, ev = jax.jit(lambda p, b: task.loss(eqx.combine(p, static), b, None))(new["params"], batch)
    assert float(loss) == pytest.approx(float(ev["loss"])) and float(loss) > 0


def test_load_splits_uses_corpus_files_or_holds_out_two_percent(tmp_path):
    sf.write(tmp_path / "a.wav", _wave(0.6, 300, 6), 22050)
    utts = [Utterance(tmp_path / "a.wav", f"line {i}", f"s{i % 3}") for i in range(100)]
    manifest = write_manifest(utts, tmp_path / "all.jsonl")
    train, held = train_dvae.load_splits(manifest, None, seed=0)
    assert len(held) == 2 and len(train) == 98 and not {u.text for u in held} & {u.text for u in train}
    assert (train, held) == train_dvae.load_splits(manifest, None, seed=0)
    corpus = tmp_path / "corpus"
    write_manifest(utts[:5], corpus / "train.jsonl")
    write_manifest(utts[5:7], corpus / "eval.jsonl")
    train, held = train_dvae.load_splits(corpus, None, seed=0)
    assert [u.text for u in held] == ["line 5", "line 6"] and len(train) == 5
    with pytest.raises(UserError, match="no usable held-out"):
        train_dvae.load_splits(corpus, write_manifest([], tmp_path / "empty.jsonl"), seed=0)

    # several sources train together: each keeps its own held-out rule
    train, held = train_dvae.load_splits(f"{corpus},{manifest}", None, seed=0)
    alone_train, alone_held = train_dvae.load_splits(manifest, None, seed=0)
    assert sorted(u.text for u in train) == sorted([f"line {i}" for i in range(5)] + [u.text for u in alone_train])
    # one seeded order across the sources: the first utterances (mel statistics) are not all the first source's
    assert [u.text for u in train] == [u.text for u in train_dvae.load_splits(f"{corpus},{manifest}", None, seed=0)[0]]
    assert [u.text for u in train] != [f"line {i}" for i in range(5)] + [u.text for u in alone_train]
    assert [u.text for u in held] == ["line 5", "line 6"] + [u.text for u in alone_held]
    train, held = train_dvae.load_splits(f"{corpus}, {manifest}", corpus / "eval.jsonl", seed=0)
    assert len(train) == 105 and [u.text for u in held] == ["line 5", "line 6"]
    with pytest.raises(UserError, match="names no corpus"):
        train_dvae.load_splits(" , ", None, seed=0)


# --- the speaker-conditioned decoder: recipes/train_dvae.py --init --decoder-speaker -----------------

def _speaker_task(tiny_model):
    import dataclasses

    cfg = dataclasses.replace(tiny_model.cfg, decoder_speaker=True)
    return train_dvae.DVAETask(cfg, tiny_model)


def test_segments_with_reference_take_another_utterance_of_the_same_speaker():
    waves = [_wave(0.5, 200 + 50 * i, i) for i in range(5)]
    speakers = ["a", "a", "b", "b", "c"]
    feats = np.arange(5, dtype=np.float32)[:, None] * np.ones((5, 3), np.float32)
    seg = train_dvae.WaveSegmentsWithReference(waves, speakers, feats, 8, 2048, seed=1)
    plain = train_dvae.WaveSegments(waves, 8, 2048, seed=1)
    for step in range(4):
        batch = seg(step)
        assert batch.shape == (8, 2048 + 3)
        np.testing.assert_array_equal(batch[:, :2048], plain(step))  # the same segments as without references
        np.testing.assert_array_equal(batch, seg(step))  # depends only on (seed, step)
        for row in batch:
            source = next(i for i, w in enumerate(waves) if np.isin(row[:100], w).all())  # the segment's utterance
            ref = int(row[-1])
            assert (feats[ref] == row[-3:]).all() and speakers[ref] == speakers[source]
            assert ref != source or speakers.count(speakers[source]) == 1
    with pytest.raises(UserError, match="5 utterances, 4 speakers"):
        train_dvae.WaveSegmentsWithReference(waves, speakers[:4], feats, 2, 2048, seed=1)


def test_change_voice_is_identity_at_rest_and_changes_mel_and_reference_alike(tiny_model):
    from xtts_jax.models.dvae import reference_features

    cfg = _speaker_task(tiny_model).config
    mel = jnp.asarray(log_mel(_wave(1.0, 300, 8), cfg.mel, cfg.mel_stats))
    feats = jnp.asarray(reference_features([np.asarray(mel)], cfg, speech_quantile=0.0))
    same_mel, same_feats = train_dvae.change_voice(mel, feats, jnp.float32(1.0), jnp.float32(0.0), cfg)
    np.testing.assert_allclose(same_mel, mel, atol=1e-5)
    np.testing.assert_allclose(same_feats, feats, atol=1e-5)
    new_mel, new_feats = train_dvae.change_voice(mel, feats, jnp.float32(0.9), jnp.float32(1.5), cfg)
    assert float(jnp.abs(new_mel - mel).max()) > 0.1
    # the changed reference features are those of the changed mel: exact for the channel means
    # (warp and tilt are linear in each frame), close for the deviations
    want = reference_features([np.asarray(new_mel)], cfg, speech_quantile=0.0)
    n = cfg.n_mels
    np.testing.assert_allclose(new_feats[:n], want[:n], atol=1e-4)
    np.testing.assert_allclose(new_feats[n:], want[n:], rtol=0.35, atol=0.05)


def test_speaker_decoder_step_trains_the_decoder_and_freezes_encoder_and_codebook(tiny_model):
    task = _speaker_task(tiny_model)
    model = task.init_model(jax.random.key(0))
    for a, b in zip(jax.tree.leaves((tiny_model.encoder, tiny_model.codebook, tiny_model.decoder)),
                    jax.tree.leaves((model.encoder, model.codebook, model.decoder))):
        np.testing.assert_array_equal(a, b)  # --init: the trained DVAE's weights
    params, static = eqx.partition(model, eqx.is_array)
    cfg = TrainConfig(lr=1e-2, warmup_steps=0, weight_decay=0.5)
    opt = task.optimizer(cfg, model)
    state = {"params": params, "opt_state": opt.init(params), "step": jnp.zeros((), jnp.int32),
             "key": jax.random.key(1)}
    waves = [_wave(1.0, 220, 4), _wave(0.6, 700, 5), _wave(0.8, 400, 6)]
    feats = train_dvae.utterance_features(waves, task.config)
    batch = jnp.asarray(train_dvae.WaveSegmentsWithReference(waves, ["a", "a", "b"], feats, 4, 4096, seed=3)(0))
    step = jax.jit(lambda s, b, k: task.train_step(s, b, k, static=static, optimizer=opt))
    new, metrics = step(state, batch, jax.random.key(2))
    new, metrics = step(new, batch, jax.random.key(3))  # the FiLM's output layer leaves zero on step 1
    assert np.isfinite(float(metrics["loss"])) and float(metrics["mel_l1"]) > 0
    for name in ("encoder", "codebook"):  # no gradient, no weight decay, no EMA
        for a, b in zip(jax.tree.leaves(getattr(params, name)), jax.tree.leaves(getattr(new["params"], name))):
            np.testing.assert_array_equal(a, b)
    moved = lambda part: max(float(jnp.abs(a - b).max()) for a, b in zip(  # noqa: E731
        jax.tree.leaves(getattr(params, part)), jax.tree.leaves(getattr(new["params"], part))))
    assert moved("decoder") > 0 and moved("speaker_film") > 0
    loss, ev = jax.jit(lambda p, b: task.loss(eqx.combine(p, static), b, None))(new["params"], batch)
    assert float(loss) == pytest.approx(float(ev["loss"])) and float(loss) > 0


def test_decoder_speaker_needs_a_trained_dvae(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_dvae.main(["--data", str(tmp_path), "--decoder-speaker", "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "give --init" in capsys.readouterr().err


def test_changed_segments_take_codes_of_the_changed_or_the_original_voice(tiny_model):
    import dataclasses

    task = _speaker_task(tiny_model)
    waves = [_wave(1.0, 220, 4), _wave(0.6, 700, 5)]
    feats = train_dvae.utterance_features(waves, task.config)
    batch = jnp.asarray(train_dvae.WaveSegmentsWithReference(waves, ["a", "a"], feats, 8, 4096, seed=3)(0))
    plain, _ = task._mels(batch[:, :-task.config.speaker_dim])
    source, target, mask, refs = task._speaker_inputs(batch, jax.random.key(0))
    np.testing.assert_array_equal(source, target)  # the default: codes of the changed voice
    changed = np.abs(np.asarray(target - plain)).max(axis=(1, 2)) > 1e-3
    assert 0 < changed.sum() < 8  # about half the segments
    source, target2, _, _ = dataclasses.replace(task, codes_from="original")._speaker_inputs(batch, jax.random.key(0))
    np.testing.assert_array_equal(target2, target)
    np.testing.assert_array_equal(source, plain)  # codes from the voice before the change
    source, target, _, refs = task._speaker_inputs(batch, None)  # evaluation: nothing changed or dropped
    np.testing.assert_array_equal(source, plain)
    np.testing.assert_array_equal(target, plain)
    np.testing.assert_array_equal(refs, batch[:, -task.config.speaker_dim:])


def test_speaker_decoder_run_keeps_its_training_voices_features(tmp_path, tiny_model, capsys):
    """recipes/train_dvae.py --decoder-speaker end to end: the exported DVAE holds each training voice's
    mean reference features (what steering reads), computed again here from the same recordings."""
    from xtts_jax.models.dvae import voice_means

    save_dvae(tiny_model, str(tmp_path / "init.safetensors"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    utts = []
    for i, (speaker, f0) in enumerate([("a", 200), ("b", 500), ("a", 260), ("c", 800), ("b", 430), ("a", 220)]):
        sf.write(corpus / f"{i}.wav", _wave(0.5, f0, i), 22050)
        utts.append(Utterance(corpus / f"{i}.wav", f"line {i}", speaker))
    write_manifest(utts[:5], corpus / "train.jsonl")
    write_manifest(utts[5:], corpus / "eval.jsonl")
    with pytest.raises(SystemExit) as e:
        train_dvae.main(["--data", str(corpus), "--init", str(tmp_path / "init.safetensors"), "--decoder-speaker",
                         "--steps", "2", "--batch-size", "2", "--segment-tokens", "8", "--eval-every", "2",
                         "--out", str(tmp_path / "run")])
    assert e.value.code == 0, capsys.readouterr().err
    dvae = load_dvae(str(tmp_path / "run" / "dvae.safetensors"))
    assert dvae.cfg.decoder_speaker and dvae.cfg.reference_voices == 3 and dvae.cfg.reference_strength == 1.0
    waves = [sf.read(u.audio_path, dtype="float32")[0] for u in utts[:5]]
    want = voice_means(train_dvae.utterance_features(waves, dvae.cfg), [u.speaker for u in utts[:5]])
    np.testing.assert_allclose(dvae.reference_voices, want, rtol=1e-5, atol=1e-5)
