"""16-bit weights files, the decoder-only DVAE, and tools/pack_model.py end to end: packed weights
against numpy's own rounding, packed decodes and logits against the float32 model's, and a
synthesis from the packed folder."""

import contextlib
import io
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import soundfile as sf

from _scripts import load_script
from xtts_jax import weights
from xtts_jax.audio.datasets import Utterance, write_manifest
from xtts_jax.errors import UserError
from xtts_jax.inference.tts import random_tts, save_tts
from xtts_jax.models.dvae import DVAE, PRESETS, dvae_loss, dvae_mel, load_dvae, save_dvae
from xtts_jax.models.tts import get_config, load_tts

pack_model = load_script("pack_model", "tools/pack_model.py")
synthesize = load_script("synthesize", "tools/synthesize.py")
encode_audio = load_script("encode_audio", "tools/encode_audio.py")

EPS = {"float16": (2.0**-11, 2.0**-24), "bfloat16": (2.0**-8, 0.0)}  # unit roundoff, smallest step
NUMPY = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


class Small(eqx.Module):
    linear: eqx.nn.Linear
    ids: jax.Array


def small(big: float = 3.0) -> Small:
    rng = np.random.default_rng(0)
    lin = eqx.nn.Linear(16, 8, key=jax.random.key(0))
    # weights over many octaves, down to float16's subnormals; ids past float16's exact integers
    w = rng.standard_normal((8, 16)) * 10.0 ** rng.uniform(-7, np.log10(big), (8, 16))
    lin = eqx.tree_at(lambda m: m.weight, lin, jnp.asarray(w, jnp.float32))
    return Small(lin, jnp.asarray([0, -5, 2049, 70_001, 2**30], jnp.int32))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16bit_file_rounds_floats_once_and_keeps_integers(tmp_path, dtype):
    model, path = small(), tmp_path / "m.safetensors"
    weights.export_safetensors(model, path, {"cfg": {"in": 16}}, dtype=dtype)
    stored = weights.read_safetensors(path)  # bfloat16 read without numpy knowing the dtype
    assert {k: str(v.dtype) for k, v in stored.items()} == {
        "linear.weight": dtype, "linear.bias": dtype, "ids": "int32"}
    assert weights.read_safetensors_metadata(path) == {"cfg": '{"in": 16}', "storage_dtype": dtype}

    back = weights.load_safetensors(eqx.filter_eval_shape(small), path)
    w, got = np.asarray(model.linear.weight), np.asarray(back.linear.weight)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, w.astype(NUMPY[dtype]).astype(np.float32))  # numpy's rounding
    unit, step = EPS[dtype]
    assert np.all(np.abs(got - w) <= unit * np.abs(w) + step)  # within half an ulp (or a subnormal step)
    assert np.any(got != w)  # it was rounded
    np.testing.assert_array_equal(back.ids, model.ids)


def test_float16_overflow_and_unknown_dtype_are_refused(tmp_path):
    with pytest.raises(UserError, match="linear.weight .* beyond float16's range"):
        weights.export_safetensors(small(big=1e6), tmp_path / "m.safetensors", dtype="float16")
    assert not (tmp_path / "m.safetensors").exists()
    weights.export_safetensors(small(big=1e6), tmp_path / "m.safetensors", dtype="bfloat16")  # its range is float32's
    with pytest.raises(UserError, match="'int8' must be one of float32, float16, bfloat16"):
        weights.export_safetensors(small(), tmp_path / "m.safetensors", dtype="int8")


def random_dvae(cfg=PRESETS["tiny"], seed=0) -> DVAE:
    rng = np.random.default_rng(seed)
    shapes = eqx.filter_eval_shape(lambda: DVAE(cfg, jax.random.key(0)))
    return jax.tree.map(lambda s: jnp.asarray(0.2 * rng.standard_normal(s.shape, np.float32)), shapes)


CODES = jnp.asarray([3, 0, 31, 7, 7, 12, 30, 1])


def test_decoder_only_dvae_decodes_as_the_full_one_and_refuses_to_encode(tmp_path):
    full = random_dvae()
    want = np.asarray(full.decode(CODES))
    save_dvae(full, str(tmp_path / "full.safetensors"))
    save_dvae(full, str(tmp_path / "dec.safetensors"), decoder_only=True)
    save_dvae(full, str(tmp_path / "dec16.safetensors"), decoder_only=True, dtype="float16")

    names = set(weights.read_safetensors(tmp_path / "dec.safetensors"))
    flat = weights.flatten(eqx.filter(full, eqx.is_array))
    assert names == {k for k in flat if k.startswith("decoder.")} | {"codebook.embed"}
    meta = weights.read_safetensors_metadata(tmp_path / "dec16.safetensors")
    assert meta["decoder_only"] == "true" and meta["storage_dtype"] == "float16"
    sizes = {n: (tmp_path / f"{n}.safetensors").stat().st_size for n in ("full", "dec", "dec16")}
    assert sizes["dec16"] < 0.55 * sizes["dec"] < 0.55 * sizes["full"]

    dec = load_dvae(str(tmp_path / "dec.safetensors"))
    assert dec.decoder_only and dec.cfg == full.cfg
    # the encoder is a placeholder of the same shapes: zeros
    assert [x.shape for x in jax.tree.leaves(dec)] == [x.shape for x in jax.tree.leaves(full)]
    assert not any(np.any(np.asarray(x)) for x in jax.tree.leaves(dec.encoder))
    np.testing.assert_array_equal(eqx.filter_jit(DVAE.decode)(dec, CODES), want)
    got16 = np.asarray(load_dvae(str(tmp_path / "dec16.safetensors")).decode(CODES))
    # float16 weights move the mel by ~6e-4 of its largest value; bfloat16's would by ~4e-3
    np.testing.assert_allclose(got16, want, rtol=0, atol=2e-3 * np.abs(want).max())
    assert np.any(got16 != want)

    mel = jnp.asarray(dvae_mel(np.zeros(4096, np.float32), dec.cfg))
    jitted = eqx.filter_jit(DVAE.encode)
    for encode in (dec.encode, lambda m: jitted(dec, m), lambda m: jax.vmap(dec)(m[None]),
                   lambda m: dvae_loss(dec, m[None], jnp.ones((1, m.shape[1]), bool))):
        with pytest.raises(UserError) as e:
            encode(mel)
        assert re.fullmatch(r"this DVAE holds only the DVAE decoder .*; encoding audio needs the full DVAE "
                            r"from recipes/train_dvae\.py", str(e.value))  # one line (JAX's notes aside)
    save_dvae(dec, str(tmp_path / "again.safetensors"))  # a decoder-only model stays decoder-only
    assert weights.read_safetensors_metadata(tmp_path / "again.safetensors")["decoder_only"] == "true"


def test_tools_that_encode_say_so_in_one_line(tmp_path, capsys):
    save_dvae(random_dvae(), str(tmp_path / "dvae.safetensors"), decoder_only=True)
    sf.write(tmp_path / "a.wav", 0.1 * np.sin(np.arange(22050) / 5.0).astype(np.float32), 22050)
    manifest = write_manifest([Utterance(tmp_path / "a.wav", "hello", "s")], tmp_path / "m.jsonl")
    with pytest.raises(SystemExit) as e:
        encode_audio.main(["--dvae", str(tmp_path / "dvae.safetensors"), "--data", str(manifest),
                           "--out", str(tmp_path / "tok")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "holds only the DVAE decoder" in err

    from xtts_jax.eval import rungs
    from xtts_jax.inference.vocoder import Vocoder

    dvae = load_dvae(str(tmp_path / "dvae.safetensors"))
    item = rungs.Item("hello", "s", tmp_path / "a.wav", tmp_path / "a.wav")
    with pytest.raises(UserError, match="holds only the DVAE decoder"):  # evaluate_tts's run_cli: one line
        rungs.dvae_round_trip([item], dvae, Vocoder.griffin_lim(dvae.cfg.mel))

    evaluate = load_script("evaluate_tts", "tools/evaluate_tts.py")  # refused before any rung runs
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--manifest", str(manifest), "--dvae", str(tmp_path / "dvae.safetensors"),
                       "--rungs", "recording,dvae", "--out", str(tmp_path / "eval")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and "holds only the DVAE decoder" in err[-1] and not (tmp_path / "eval").exists()


META = {"sampling": {"temperature": 0.5, "top_k": 20}, "steps": 7, "val_loss": 1.25}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    save_tts(random_tts(get_config("tiny"), seed=1, std=0.08), str(d / "tts.safetensors"), META)
    save_dvae(random_dvae(), str(d / "dvae.safetensors"))
    (d / "speakers").mkdir()
    rng = np.random.default_rng(2)
    np.save(d / "speakers" / "ana.npy", rng.standard_normal(64).astype(np.float32))
    np.save(d / "speakers" / "bo.npy", rng.standard_normal((3, 64)).astype(np.float32))
    np.save(d / "speakers" / "bo.decoder.npy", rng.standard_normal(512).astype(np.float32))  # a vocoder's
    return d


def pack(run_dir, out, *extra):
    return pack_model.main(["--tts", str(run_dir / "tts.safetensors"), "--dvae", str(run_dir / "dvae.safetensors"),
                            "--speakers", str(run_dir / "speakers"), "--out", str(out), *map(str, extra)])


@pytest.fixture(scope="module")
def packed(run_dir, tmp_path_factory):
    out, printed = tmp_path_factory.mktemp("packed"), io.StringIO()
    with pytest.raises(SystemExit) as e, contextlib.redirect_stdout(printed):
        pack(run_dir, out)
    assert e.value.code == 0
    (out.parent / "printed.txt").write_text(printed.getvalue())
    return out


def test_pack_writes_16bit_files_with_the_metadata_and_voices(run_dir, packed):
    src, dst = run_dir / "tts.safetensors", packed / "tts.safetensors"
    meta = weights.read_safetensors_metadata(src)
    assert weights.read_safetensors_metadata(dst) == {**meta, "storage_dtype": "float16"}
    original, stored = weights.read_safetensors(src), weights.read_safetensors(dst)
    assert {k: v.shape for k, v in stored.items()} == {k: v.shape for k, v in original.items()}
    assert {str(v.dtype) for v in stored.values()} == {"float16"}
    assert dst.stat().st_size < 0.52 * src.stat().st_size
    assert weights.read_safetensors_metadata(packed / "dvae.safetensors")["decoder_only"] == "true"

    assert sorted(p.name for p in (packed / "speakers").iterdir()) == ["ana.npy", "bo.npy"]
    for name in ("ana", "bo"):
        got, want = np.load(packed / "speakers" / f"{name}.npy"), np.load(run_dir / "speakers" / f"{name}.npy")
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)

    out = (packed.parent / "printed.txt").read_text().splitlines()
    files = ["tts.safetensors", "dvae.safetensors", "speakers/ana.npy", "speakers/bo.npy"]
    assert [line.split()[0] for line in out] == [*files, "total"]
    total = sum((packed / f).stat().st_size for f in files) / 1e6
    assert float(out[-1].split()[1]) == pytest.approx(total, abs=1e-3)


def test_packed_model_computes_what_the_float32_model_does(run_dir, packed):
    forward = eqx.filter_jit(lambda m, c, t, a: m(c, t, a))
    cond = jnp.asarray(np.load(run_dir / "speakers" / "bo.npy"))
    text, audio = jnp.asarray([50256, 15496, 612, 13, 50256]), jnp.asarray([32, 3, 9, 27, 0, 14])
    want = forward(load_tts(str(run_dir / "tts.safetensors")), cond, text, audio)
    got = forward(load_tts(str(packed / "tts.safetensors")), cond, text, audio)
    for g, w in ((got.audio_logits, want.audio_logits), (got.text_logits, want.text_logits)):
        g, w = np.asarray(g), np.asarray(w)
        # float16 weights move these logits by ~6e-4 of their largest; bfloat16's would by ~5e-3
        np.testing.assert_allclose(g, w, rtol=0, atol=2e-3 * np.abs(w).max())
        assert np.any(g != w)

    full, dec = load_dvae(str(run_dir / "dvae.safetensors")), load_dvae(str(packed / "dvae.safetensors"))
    want = np.asarray(full.decode(CODES))
    np.testing.assert_allclose(dec.decode(CODES), want, rtol=0, atol=2e-3 * np.abs(want).max())


def test_synthesize_finds_the_dvae_and_voices_in_the_packed_folder(packed, capsys):
    wav = packed.parent / "hello.wav"
    with pytest.raises(SystemExit) as e:
        synthesize.main(["--checkpoint", str(packed / "tts.safetensors"), "--speaker", "bo",
                         "--text", "Hello there.", "--max-new-tokens", "6", "-o", str(wav)])
    assert e.value.code == 0, capsys.readouterr().err
    assert "griffinlim" in capsys.readouterr().err.replace("-", "").lower()  # the DVAE beside it renders
    wave, sr = sf.read(wav)
    assert sr == 22050 and 0 < len(wave) <= 6 * 1024 and np.all(np.isfinite(wave))


@pytest.mark.parametrize("case", ["missing tts", "missing dvae", "speakers not a folder", "no speakers",
                                  "speaker of another width", "speaker with NaN", "another DVAE", "out is the run"])
def test_bad_input_is_one_line_exit_2(run_dir, tmp_path, capsys, case):
    args = {"--tts": run_dir / "tts.safetensors", "--dvae": run_dir / "dvae.safetensors",
            "--speakers": run_dir / "speakers", "--out": tmp_path / "out"}
    bad = tmp_path / "bad"
    bad.mkdir()
    if case == "missing tts":
        args["--tts"], want = tmp_path / "none.safetensors", "does not exist"
    elif case == "missing dvae":
        args["--dvae"], want = tmp_path / "none.safetensors", "does not exist"
    elif case == "speakers not a folder":
        args["--speakers"], want = run_dir / "speakers" / "ana.npy", "is not a folder"
    elif case == "no speakers":
        args["--speakers"], want = bad, "holds no speaker embedding"
    elif case == "speaker of another width":
        np.save(bad / "x.npy", np.ones(32, np.float32))
        args["--speakers"], want = bad, r"must have shape \(64,\) or \(K, 64\), got \(32,\)"
    elif case == "speaker with NaN":
        np.save(bad / "x.npy", np.full(64, np.nan, np.float32))
        args["--speakers"], want = bad, "NaN"
    elif case == "another DVAE":
        import dataclasses

        save_dvae(random_dvae(dataclasses.replace(PRESETS["tiny"], num_tokens=16)), str(bad / "d.safetensors"))
        args["--dvae"], want = bad / "d.safetensors", "predicts 32 audio codes, the DVAE .* has 16"
    else:
        args["--out"], want = run_dir, "would overwrite the model being packed"
    with pytest.raises(SystemExit) as e:
        pack_model.main([str(x) for kv in args.items() for x in kv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert re.search(want, err), err
    assert not (tmp_path / "out").exists()


def test_sampling_flags_become_the_packed_checkpoints_recommendation(run_dir, tmp_path, capsys):
    from xtts_jax.inference.tts import sampling_defaults

    with pytest.raises(SystemExit) as e:
        pack(run_dir, tmp_path / "p", "--temperature", 0.3, "--repetition-penalty", 1.0)
    assert e.value.code == 0, capsys.readouterr().err
    got = sampling_defaults(tmp_path / "p" / "tts.safetensors")
    # the flags given, on top of what the checkpoint recommended (its top_k 20), the rest XTTS-v2's
    assert (got["temperature"], got["repetition_penalty"], got["top_k"]) == (0.3, 1.0, 20)
    assert got["top_p"] == sampling_defaults(run_dir / "tts.safetensors")["top_p"]
    with pytest.raises(SystemExit) as e:
        pack(run_dir, tmp_path / "q", "--top-p", 1.5)
    assert e.value.code == 2 and "top_p" in capsys.readouterr().err.replace("top-p", "top_p")


def test_pack_ships_the_recogniser_and_synthesis_uses_its_candidates(run_dir, tmp_path, capsys):
    from xtts_jax.inference.tts import candidates_default
    from xtts_jax.models import recognizer as rec

    cfg = load_tts(str(run_dir / "tts.safetensors")).config
    recognizer = rec.CodeRecognizer(rec.RecognizerConfig(num_audio_codes=cfg.num_audio_codes, num_labels=cfg.text_vocab_size,
                                                         n_embd=8, n_layer=1, kernel_size=3), key=jax.random.key(0))
    rec.save_recognizer(recognizer, str(tmp_path / "r.safetensors"), {"token_error_rate": 0.5})
    with pytest.raises(SystemExit) as e:
        pack(run_dir, tmp_path / "p", "--recognizer", tmp_path / "r.safetensors", "--candidates", 3)
    assert e.value.code == 0, capsys.readouterr().err
    shipped = tmp_path / "p" / "recognizer.safetensors"
    meta = weights.read_safetensors_metadata(shipped)
    assert meta["storage_dtype"] == "float16" and meta["token_error_rate"] == "0.5"
    assert candidates_default(tmp_path / "p" / "tts.safetensors") == 3
    assert rec.load_recognizer(str(shipped)).config == recognizer.config
    with pytest.raises(SystemExit) as e:  # the packed model samples three candidates a sentence by default
        synthesize.main(["--checkpoint", str(tmp_path / "p" / "tts.safetensors"), "--speaker", "bo",
                         "--text", "Hello there.", "--max-new-tokens", "6", "-o", str(tmp_path / "a.wav")])
    assert e.value.code == 0 and "best of 3 candidates" in capsys.readouterr().err
    # more candidates than one, and no recogniser to choose: refused in one line, nothing written
    with pytest.raises(SystemExit) as e:
        pack(run_dir, tmp_path / "q", "--candidates", 2)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "need a recogniser" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        synthesize.main(["--checkpoint", str(run_dir / "tts.safetensors"), "--speaker", "bo", "--candidates", "4",
                         "--text", "Hello there.", "-o", str(tmp_path / "b.wav")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "need a recogniser" in err and not (tmp_path / "b.wav").exists()


def speaker_dvae(film_scale: float) -> DVAE:
    """A tiny DVAE whose decoder reads reference features, its FiLM map's output scaled by ``film_scale``."""
    import dataclasses

    dvae = random_dvae(dataclasses.replace(PRESETS["tiny"], decoder_speaker=True), seed=3)
    return eqx.tree_at(lambda m: m.speaker_film.out, dvae,
                       jax.tree.map(lambda w: film_scale * w, dvae.speaker_film.out))


def write_tone(path, f0: float) -> None:
    """One second of a sine at ``f0`` Hz, 22.05 kHz."""
    t = np.arange(22050) / 22050
    sf.write(path, (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), 22050)


def test_speaker_decoder_dvae_ships_each_voices_reference_and_synthesis_reads_it(run_dir, tmp_path, capsys):
    from xtts_jax.inference.tts import dvae_reference_features

    dvae = speaker_dvae(0.01)
    save_dvae(dvae, str(tmp_path / "dvae.safetensors"))
    utts = []
    for i, (name, f0) in enumerate([("bo", 150), ("bo", 170), ("ana", 300), ("bo", 190)]):
        write_tone(tmp_path / f"{i}.wav", f0)
        utts.append(Utterance(tmp_path / f"{i}.wav", "hi", name))
    manifest = write_manifest(utts, tmp_path / "voices.jsonl")
    args = ["--tts", run_dir / "tts.safetensors", "--dvae", tmp_path / "dvae.safetensors",
            "--speakers", run_dir / "speakers"]
    with pytest.raises(SystemExit) as e:  # the voices' references are needed
        pack_model.main(list(map(str, args + ["--out", tmp_path / "p0"])))
    assert e.value.code == 2 and "give --voice-data" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        pack_model.main(list(map(str, args + ["--out", tmp_path / "p", "--voice-data", manifest, "--voice-clips", 2])))
    assert e.value.code == 0, capsys.readouterr().err
    speakers = tmp_path / "p" / "speakers"
    assert sorted(p.name for p in speakers.iterdir()) == ["ana.decoder.npy", "ana.npy", "bo.decoder.npy", "bo.npy"]
    full = load_dvae(str(tmp_path / "dvae.safetensors"))
    first_two = [dvae_reference_features(full, [tmp_path / f"{i}.wav"]) for i in (0, 1)]  # each clip alone
    np.testing.assert_allclose(np.load(speakers / "bo.decoder.npy"), (first_two[0] + first_two[1]) / 2, rtol=1e-6)

    def speak(name):
        with pytest.raises(SystemExit) as e:
            synthesize.main(["--checkpoint", str(tmp_path / "p" / "tts.safetensors"), "--speaker", "bo",
                             "--text", "Hello there.", "--max-new-tokens", "6", "-o", str(tmp_path / name)])
        assert e.value.code == 0
        return sf.read(tmp_path / name)[0], capsys.readouterr().err

    with_reference, err = speak("a.wav")
    assert "renders without" not in err
    (speakers / "bo.decoder.npy").unlink()  # a voice without its reference: the unconditioned decoder, said so
    without, err = speak("b.wav")
    assert "renders without the voice's reference features" in err
    assert len(with_reference) == len(without) > 0 and np.abs(with_reference - without).max() > 1e-4

    with pytest.raises(SystemExit) as e:  # a DVAE that reads no reference takes no --voice-data
        pack(run_dir, tmp_path / "q", "--voice-data", manifest)
    assert e.value.code == 2 and "for a speaker-conditioned DVAE" in capsys.readouterr().err


def test_packed_reference_strength_is_stored_and_synthesis_steers_by_it(run_dir, tmp_path, capsys):
    from xtts_jax.inference.tts import dvae_reference_features
    from xtts_jax.models.dvae import with_reference_voices

    dvae = speaker_dvae(0.05)
    save_dvae(dvae, str(tmp_path / "plain.safetensors"))
    write_tone(tmp_path / "bo.wav", 170)
    bo = dvae_reference_features(dvae, [tmp_path / "bo.wav"])  # a training voice near bo, two far off
    noise = np.random.default_rng(1).standard_normal((3, dvae.cfg.speaker_dim)).astype(np.float32)
    voices = np.stack([bo + 0.2 * noise[0], bo + 5 * noise[1], bo + 5 * noise[2]])
    save_dvae(with_reference_voices(dvae, voices), str(tmp_path / "dvae.safetensors"))
    manifest = write_manifest([Utterance(tmp_path / "bo.wav", "hi", "bo"), Utterance(tmp_path / "bo.wav", "hi", "ana")],
                              tmp_path / "voices.jsonl")

    def pack_with(dvae_file, out, strength):
        with pytest.raises(SystemExit) as e:
            pack_model.main(list(map(str, ["--tts", run_dir / "tts.safetensors", "--dvae", dvae_file, "--speakers",
                                           run_dir / "speakers", "--voice-data", manifest, "--out", out,
                                           "--reference-strength", strength])))
        return e.value.code, capsys.readouterr().err

    code, err = pack_with(tmp_path / "plain.safetensors", tmp_path / "p0", 2)  # no training voices to steer from
    assert code == 2 and "holds no reference features" in err and err.count("\n") == 1
    code, err = pack_with(tmp_path / "dvae.safetensors", tmp_path / "p0", 0)
    assert code == 2 and "positive number" in err and err.count("\n") == 1
    code, err = pack_with(tmp_path / "dvae.safetensors", tmp_path / "p", 2.5)
    assert code == 0, err
    packed = load_dvae(str(tmp_path / "p" / "dvae.safetensors"))
    assert packed.cfg.reference_strength == 2.5 and packed.cfg.reference_voices == 3
    np.testing.assert_allclose(packed.reference_voices, voices, rtol=1e-3, atol=1e-3)  # float16 storage

    def speak(name, *extra):
        with pytest.raises(SystemExit) as e:
            synthesize.main(["--checkpoint", str(tmp_path / "p" / "tts.safetensors"), "--speaker", "bo", "--text",
                             "Hello there.", "--max-new-tokens", "6", "-o", str(tmp_path / name), *extra])
        assert e.value.code == 0, capsys.readouterr().err
        return sf.read(tmp_path / name)[0]

    default, same, as_read = speak("a.wav"), speak("b.wav", "--reference-strength", "2.5"), \
        speak("c.wav", "--reference-strength", "1")
    np.testing.assert_array_equal(default, same)  # the packed strength is the default
    assert len(default) == len(as_read) > 0 and np.abs(default - as_read).max() > 1e-4
    with pytest.raises(SystemExit) as e:
        synthesize.main(["--checkpoint", str(tmp_path / "p" / "tts.safetensors"), "--speaker", "bo", "--text", "Hi.",
                         "--reference-strength", "nan", "-o", str(tmp_path / "d.wav")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "positive number" in err and not (tmp_path / "d.wav").exists()
