"""tools/synthesize.py and tools/speaker_embedding.py end to end on a tiny random checkpoint."""

import os
import re
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from xtts_jax.inference.tts import random_tts, save_tts
from xtts_jax.models.dvae import DVAE, PRESETS, save_dvae
from xtts_jax.models.tts import get_config

ROOT = Path(__file__).resolve().parents[1]


def random_dvae(seed=0):
    rng = np.random.default_rng(seed)
    shapes = eqx.filter_eval_shape(lambda: DVAE(PRESETS["tiny"], jax.random.key(0)))
    return jax.tree.map(lambda s: jnp.asarray(0.05 * rng.standard_normal(s.shape, np.float32))
                        if isinstance(s, jax.ShapeDtypeStruct) else s, shapes)


def run(tool, *args, stdin=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, str(ROOT / "tools" / tool), *map(str, args)], input=stdin,
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("tts")
    save_tts(random_tts(get_config("tiny"), seed=1, std=0.08), str(d / "tts.safetensors"))
    save_dvae(random_dvae(), str(d / "dvae.safetensors"))  # found beside the checkpoint
    rng = np.random.default_rng(0)
    sf.write(d / "ref.wav", 0.1 * rng.standard_normal(30000).astype(np.float32), 22050)
    return d


def test_speaker_embedding_then_synthesize_from_stdin(ckpt):
    r = run("speaker_embedding.py", ckpt / "ref.wav", "--checkpoint", ckpt / "tts.safetensors", "-o", ckpt / "emb.npy")
    assert r.returncode == 0, r.stderr
    emb = np.load(ckpt / "emb.npy")
    assert emb.shape == (8, 64) and emb.dtype == np.float32

    out = ckpt / "out.wav"
    r = run("synthesize.py", "--checkpoint", ckpt / "tts.safetensors", "--speaker", ckpt / "emb.npy",
            "--max-new-tokens", 8, "--seed", 3, "-o", out, stdin="Hello there. See you soon!\n")
    assert r.returncode == 0, r.stderr
    m = re.search(r"([\d.]+) s of audio in ([\d.]+) s \(real-time factor ([\d.]+)\)", r.stdout)
    assert m, r.stdout
    wave, sr = sf.read(out)
    assert sr == 22050 and 0 < len(wave) and abs(len(wave) / sr - float(m.group(1))) < 0.01
    # two sentences of at most 8 tokens (1,024 samples each) and the gap between them
    assert len(wave) <= 2 * 8 * 1024 + int(0.15 * sr)
    # a voice by name: speakers/NAME.npy beside the checkpoint, the same audio as the file itself
    (ckpt / "speakers").mkdir(exist_ok=True)
    np.save(ckpt / "speakers" / "me.npy", emb)
    r = run("synthesize.py", "--checkpoint", ckpt / "tts.safetensors", "--speaker", "me",
            "--max-new-tokens", 8, "--seed", 3, "-o", ckpt / "named.wav", stdin="Hello there. See you soon!\n")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(sf.read(ckpt / "named.wav")[0], wave)


@pytest.mark.parametrize("case", ["empty text", "missing checkpoint", "bad shape", "object array", "bad wav",
                                  "unknown voice", "vector of another size", "text file as .npy"])
def test_bad_input_is_one_line_exit_2(ckpt, case):
    base = ["--checkpoint", ckpt / "tts.safetensors", "-o", ckpt / "x.wav", "--text", "Hi."]
    if case == "empty text":
        args, want = [*base[:-1], "   "], "text is empty"
    elif case == "missing checkpoint":
        args, want = ["--checkpoint", ckpt / "none.safetensors", "-o", ckpt / "x.wav", "--text", "Hi."], "does not exist"
    elif case == "bad shape":
        np.save(ckpt / "bad.npy", np.ones((2, 3), np.float32))
        args, want = base, r"shape \(64,\) or \(K, 64\)"
    elif case == "object array":
        np.save(ckpt / "bad.npy", np.array([None, 1], dtype=object), allow_pickle=True)
        args, want = base, "Python objects"
    elif case == "vector of another size":  # the file's own shape, not the (1, 7) it is read as
        np.save(ckpt / "bad.npy", np.ones(7, np.float32))
        args, want = base, r"bad.npy must have shape \(64,\) or \(K, 64\), got \(7,\)$"
    elif case == "text file as .npy":
        (ckpt / "bad.npy").write_text("0.1 0.2 0.3\n")
        args, want = base, "bad.npy is not a .npy file"
    elif case == "unknown voice":
        (ckpt / "speakers").mkdir(exist_ok=True)
        np.save(ckpt / "speakers" / "alice.npy", np.ones(64, np.float32))
        args, want = [*base, "--speaker", "bob"], r"'bob' is neither .* \(voices: (.*, )?alice\b"
    else:
        (ckpt / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
        args, want = [*base, "--speaker-wav", ckpt / "broken.wav"], "cannot read audio"
    if case in ("bad shape", "object array", "vector of another size", "text file as .npy"):
        args = [*args, "--speaker", ckpt / "bad.npy"]
    elif case not in ("bad wav", "unknown voice"):
        args = [*args, "--speaker", ckpt / "emb_missing.npy"]
    r = run("synthesize.py", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and re.search(want, lines[0]), r.stderr


def test_checkpoint_sampling_defaults_and_flags(ckpt, tmp_path):
    """Unset flags take the checkpoint's recommended sampling, else XTTS-v2's; flags win."""
    import argparse

    from xtts_jax.inference.flags import add_sampling_flags, sampling_from_flags
    from xtts_jax.inference.tts import XTTS_SAMPLING, load_tts

    tuned = tmp_path / "tuned.safetensors"
    save_tts(load_tts(ckpt / "tts.safetensors"), str(tuned), {"sampling": {"temperature": 0.3, "repetition_penalty": 2.0}})
    ap = argparse.ArgumentParser()
    add_sampling_flags(ap)
    plain = sampling_from_flags(ap.parse_args([]), str(ckpt / "tts.safetensors"), 5)
    assert (plain.temperature, plain.top_k, plain.top_p, plain.repetition_penalty) == (
        XTTS_SAMPLING["temperature"], XTTS_SAMPLING["top_k"], XTTS_SAMPLING["top_p"], XTTS_SAMPLING["repetition_penalty"])
    got = sampling_from_flags(ap.parse_args(["--top-k", "7"]), str(tuned), 5)
    assert (got.temperature, got.top_k, got.top_p, got.repetition_penalty) == (0.3, 7, XTTS_SAMPLING["top_p"], 2.0)
    assert not got.penalize_prompt and got.max_new_tokens == 5
    r = run("synthesize.py", "--checkpoint", tuned, "--speaker", ckpt / "emb_missing.npy", "--top-p", "0",
            "-o", tmp_path / "x.wav", "--text", "Hi.")
    assert r.returncode == 2 and "top_p" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("case", ["random bytes", "empty", "folder", "truncated"])
def test_broken_weights_files_are_one_line_exit_2(ckpt, tmp_path, case):
    """Every weights flag of synthesize.py (and speaker_embedding.py's checkpoint) names the bad file
    in one line, exit 2: never the safetensors reader's traceback, never "does not exist" for a folder."""
    bad = tmp_path / "bad.safetensors"
    if case == "random bytes":
        bad.write_bytes(np.random.default_rng(0).bytes(2000))
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "folder":
        bad.mkdir()
    else:
        data = (ckpt / "tts.safetensors").read_bytes()
        bad.write_bytes(data[: len(data) // 3])
    want = "is a directory, not a file" if case == "folder" else "is not a safetensors file"
    text = ["--text", "It was a sunny day.", "--speaker", ckpt / "emb_missing.npy", "-o", tmp_path / "x.wav"]
    for tool, args, what in (
            ("synthesize.py", ["--checkpoint", bad, *text], "TTS checkpoint"),
            ("synthesize.py", ["--checkpoint", ckpt / "tts.safetensors", "--dvae", bad, *text[:2],
                               "--speaker-wav", ckpt / "ref.wav", *text[4:]], "DVAE checkpoint"),
            ("speaker_embedding.py", [ckpt / "ref.wav", "--checkpoint", bad, "-o", tmp_path / "e.npy"], "TTS checkpoint")):
        r = run(tool, *args)
        assert r.returncode == 2, (tool, what, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {what} {bad} {want}"), (tool, r.stderr)


def test_speaker_embedding_defaults_to_the_shipped_demo(tmp_path):
    """README's command, with no --checkpoint: the default model's (num_latents, 1024) = (16, 1024) vectors,
    the mission's speaker interface."""
    rng = np.random.default_rng(1)
    for name in ("ref.wav", "more.wav"):
        sf.write(tmp_path / name, 0.1 * rng.standard_normal(22050).astype(np.float32), 22050)
    r = run("speaker_embedding.py", tmp_path / "ref.wav", tmp_path / "more.wav", "-o", tmp_path / "emb.npy")
    assert r.returncode == 0, r.stderr
    emb = np.load(tmp_path / "emb.npy")
    assert emb.shape == (16, 1024) and emb.dtype == np.float32
    # and the decoder's reference features of the same recordings, where synthesize.py looks for them
    from xtts_jax.assets import TTS_DEMO
    from xtts_jax.inference.tts import dvae_reference_features
    from xtts_jax.models.dvae import load_dvae

    want = dvae_reference_features(load_dvae(str(TTS_DEMO.with_name("dvae.safetensors"))),
                                   [tmp_path / "ref.wav", tmp_path / "more.wav"])
    np.testing.assert_allclose(np.load(tmp_path / "emb.decoder.npy"), want, rtol=1e-5, atol=1e-6)
    assert "emb.decoder.npy" in r.stdout
