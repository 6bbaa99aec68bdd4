"""recipes/train_tts.py end to end on a tiny corpus: manifest -> DVAE tokens -> a trained
checkpoint, then ``--init`` fine-tuning from that checkpoint."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from _scripts import load_script
from xtts_jax.audio.datasets import Utterance, write_manifest
from xtts_jax.audio.mel import compute_mel_stats, log_mel
from xtts_jax.inference.tts import load_tts
from xtts_jax.models.dvae import DVAE, PRESETS, save_dvae
from xtts_jax.train.checkpoint import read_safetensors_metadata


encode_audio = load_script("encode_audio", "tools/encode_audio.py")
train_tts = load_script("train_tts", "recipes/train_tts.py")

SENTENCES = ["The cat sat.", "A dog ran home.", "Mom baked a cake.", "A cat ran home."]  # the last held out


def _wave(seconds, f0, seed):
    t = np.arange(int(seconds * 22050)) / 22050
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * f0 * t * (1 + 0.3 * t)) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _run(module, argv):
    with pytest.raises(SystemExit) as e:
        module.main(argv)
    return e.value.code


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two 'speakers' (pitch) reading four sentences, one held out each; DVAE tokens of both splits."""
    root = tmp_path_factory.mktemp("tts_corpus")
    splits = {"train": [], "eval": []}
    for s, f0 in (("low", 180), ("high", 420)):
        for i, text in enumerate(SENTENCES):
            path = root / f"{s}_{i}.wav"
            sf.write(path, _wave(0.6 + 0.1 * i, f0 * (1 + 0.05 * i), 10 * i + len(s)), 22050)
            splits["eval" if i == 3 else "train"].append(Utterance(path, text, s))
    stats = compute_mel_stats(log_mel(_wave(1.0, f, 0)) for f in (180, 420))
    save_dvae(DVAE(dataclasses.replace(PRESETS["tiny"], mel_stats=stats), jax.random.key(0)), str(root / "dvae.safetensors"))
    for split, utts in splits.items():
        manifest = write_manifest(utts, root / f"{split}.jsonl")
        assert _run(encode_audio, ["--dvae", str(root / "dvae.safetensors"), "--data", str(manifest),
                                   "--out", str(root / "tokens" / split)]) == 0
    return root


def _train(corpus, out, *extra):
    return _run(train_tts, ["--tokens", str(corpus / "tokens" / "train"), "--preset", "tiny", "--text-vocab", "corpus",
                            "--steps", "2", "--batch-size", "4", "--eval-every", "2", "--sample-every", "0",
                            "--ckpt-every", "0", "--length-buckets", "1", "--ref-seconds", "0.5",
                            "--compute-dtype", "float32",  # one arithmetic on every CPU; tests pass bfloat16 after it
                            "--out", str(out), *extra])


def _arrays(model):
    return jax.tree.leaves(eqx.filter(model, eqx.is_array))


@pytest.fixture(scope="module")
def base(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tts_base")
    assert _train(corpus, out, "--lr", "1e-2") == 0
    return out


def test_train_then_fine_tune_from_the_checkpoint(corpus, base, tmp_path):
    first = load_tts(base / "tts.safetensors")
    meta = read_safetensors_metadata(str(base / "tts.safetensors"))
    assert sorted(p.name for p in (base / "speakers").iterdir()) == ["high.npy", "low.npy"]
    assert first.config.text_vocab and meta["steps"] == "2"
    fresh = train_tts.TTSTask(first.config, 16, 16, 4).init_model(jax.random.key(0))
    assert any(not np.allclose(a, b) for a, b in zip(_arrays(first), _arrays(fresh)))  # it trained

    # a vanishing lr (AdamW's steps and decay scale with it): fine-tuning must start from the
    # checkpoint's weights, and evaluate them to its held-out loss on the same held-out batches.
    same = tmp_path / "same"
    assert _train(corpus, same, "--init", str(base / "tts.safetensors"), "--lr", "1e-12", "--preset", "demo") == 0
    kept = load_tts(same / "tts.safetensors")
    assert kept.config == first.config  # --preset is ignored: the checkpoint's config wins
    for a, b in zip(_arrays(first), _arrays(kept)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    tuned_meta = read_safetensors_metadata(str(same / "tts.safetensors"))
    np.testing.assert_allclose(float(tuned_meta["val_loss"]), float(meta["val_loss"]), rtol=1e-6)
    assert tuned_meta["steps"] == "4" and tuned_meta["fine_tuned_from"] == str(base / "tts.safetensors")


def test_bfloat16_training_keeps_the_checkpoints_dtype(corpus, base, tmp_path):
    # --compute-dtype bfloat16 (the CPU's bfloat16 kernels, models/cpu_kernels.py) for the run only:
    # at a vanishing lr the held-out loss is the checkpoint's, up to bfloat16's rounding, and the
    # saved config is the checkpoint's own (auto), so inference is not switched to bfloat16
    meta = read_safetensors_metadata(str(base / "tts.safetensors"))
    out = tmp_path / "bf16"
    assert _train(corpus, out, "--init", str(base / "tts.safetensors"), "--lr", "1e-12", "--compute-dtype", "bfloat16") == 0
    assert load_tts(out / "tts.safetensors").config == load_tts(base / "tts.safetensors").config
    assert load_tts(out / "tts.safetensors").config.gpt.compute_dtype == "auto"
    ours, f32 = float(read_safetensors_metadata(str(out / "tts.safetensors"))["val_loss"]), float(meta["val_loss"])
    assert 0 < abs(ours - f32) < 0.02 * f32
    model = train_tts.TTSTask(load_tts(base / "tts.safetensors").config, 16, 16, 4, compute_dtype="bfloat16",
                              init=str(base / "tts.safetensors")).init_model(jax.random.key(0))
    assert model.config.gpt.dtype == jnp.bfloat16


def test_init_errors_are_one_line(corpus, base, tmp_path, capsys):
    assert _train(corpus, tmp_path / "a", "--init", str(tmp_path / "none.safetensors")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert _train(corpus, tmp_path / "b", "--init", str(base / "tts.safetensors"), "--init-gpt", "gpt2") == 2
    assert "pass one" in capsys.readouterr().err
    other = DVAE(dataclasses.replace(PRESETS["tiny"], num_tokens=48), jax.random.key(1))
    save_dvae(other, str(tmp_path / "other.safetensors"))
    assert _train(corpus, tmp_path / "c", "--init", str(base / "tts.safetensors"),
                  "--dvae", str(tmp_path / "other.safetensors")) == 2
    err = capsys.readouterr().err
    assert "predicts 32 audio codes" in err and "has 48" in err


def test_phoneme_model_with_1024_d_speakers_trains_and_speaks_words_it_never_heard(corpus, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "phon"
    assert _train(corpus, out, "--text-vocab", "phonemes", "--speaker-dim", "1024", "--spell-fraction", "0.5") == 0
    model = load_tts(out / "tts.safetensors")
    assert model.config.tokenizer == "phonemes" and model.config.speaker_width == 1024
    assert np.load(out / "speakers" / "low.npy").shape == (model.config.conditioning.num_latents, 1024)
    # the synthesis tool takes a (1024,) vector and a sentence of words the corpus never had
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).standard_normal(1024).astype(np.float32))
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "tools/synthesize.py"), "--checkpoint", str(out / "tts.safetensors"),
                           "--dvae", str(corpus / "dvae.safetensors"), "--speaker", str(tmp_path / "emb.npy"),
                           "--text", "Zebras call at 9:30, don't they?", "--max-new-tokens", "8", "-o", str(tmp_path / "o.wav")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.wav").is_file() and "wrote" in proc.stdout  # (a 2-step model may stop at once)


def test_init_gpt_from_a_text_lm_file_starts_the_transformer(corpus, tmp_path):
    """The mission's chain: a text LM's exported model.safetensors (as recipes/tinystories_pretrain.py
    writes it) starts a phoneme model's blocks. Its loader runs under the trainer's eval_shape of
    init_model and is cached, so it must hand out concrete arrays (a tracer leak failed here before)."""
    from xtts_jax.models.gpt import GPT
    from xtts_jax.models.tts import get_config
    from xtts_jax.train.lm import LMTask
    from xtts_jax.weights import export_safetensors

    g = get_config("tiny").gpt
    gpt_cfg = dataclasses.replace(g, vocab_size=300, block_size=64)
    gpt = GPT(gpt_cfg, key=jax.random.key(7))
    export_safetensors(gpt, str(tmp_path / "lm.safetensors"), {"config": {"task": LMTask(gpt_cfg).to_dict()}})
    out = tmp_path / "run"
    assert _run(train_tts, ["--tokens", str(corpus / "tokens" / "train"), "--preset", "tiny", "--text-vocab",
                            "phonemes", "--init-gpt", str(tmp_path / "lm.safetensors"), "--steps", "1",
                            "--lr", "1e-12", "--batch-size", "4", "--eval-every", "0", "--sample-every", "0",
                            "--ckpt-every", "0", "--length-buckets", "1", "--ref-seconds", "0.5",
                            "--out", str(out)]) == 0
    tuned = load_tts(out / "tts.safetensors")
    for a, b in zip(_arrays(gpt.transformer), _arrays(tuned.transformer)):  # a vanishing lr: the GPT's blocks
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)


def test_several_token_stems_train_as_one_corpus(corpus, tmp_path, capsys):
    import json
    import shutil

    from xtts_jax.errors import UserError
    from xtts_jax.models import tts as tts_lib

    second = tmp_path / "tokens2"
    second.mkdir()
    for split in ("train", "eval"):
        for ext in (".bin", ".jsonl", ".json"):
            shutil.copyfile(corpus / "tokens" / f"{split}{ext}", second / f"{split}{ext}")
    stems = [str(corpus / "tokens" / "train"), str(second / "train")]
    cfg = tts_lib.with_text_vocab(tts_lib.get_config("tiny"), set().union(*(train_tts.corpus_text_ids(s, None) for s in stems)))
    one = train_tts.load_split(stems[0], cfg, 4, None)
    both = train_tts.load_splits(stems, cfg, 4, None)
    assert both.text == one.text + one.text and both.audio == one.audio + one.audio
    assert both.speaker == one.speaker * 2 and both.ref_mel.shape[0] == 2 * one.ref_mel.shape[0]
    np.testing.assert_array_equal(both.ref_mel[len(one.text):], one.ref_mel)
    assert train_tts.token_dvae(stems) == str(corpus / "dvae.safetensors")

    # the command line takes the stems separated by commas, held-out stems beside each
    assert _train(corpus, tmp_path / "run", "--tokens", ",".join(stems)) == 0
    assert f"{2 * len(one.text)} training and" in capsys.readouterr().out

    info = json.loads((second / "train.json").read_text())
    # a byte-identical copy of the DVAE is the same DVAE; a different file is not
    copy = tmp_path / "copy" / "dvae.safetensors"
    copy.parent.mkdir()
    copy.write_bytes((corpus / "dvae.safetensors").read_bytes())
    (second / "train.json").write_text(json.dumps({**info, "dvae_path": str(copy)}))
    assert train_tts.token_dvae(stems) in (str(copy), str(corpus / "dvae.safetensors"))
    data = copy.read_bytes()
    copy.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(UserError, match="different DVAEs"):
        train_tts.token_dvae(stems)
    (second / "train.json").write_text(json.dumps({**info, "dvae_path": str(tmp_path / "other.safetensors")}))
    with pytest.raises(UserError, match="different DVAEs"):
        train_tts.token_dvae(stems)
    assert _train(corpus, tmp_path / "bad", "--tokens", ",".join(stems)) == 2
    assert "do not mix" in capsys.readouterr().err


def test_ctc_weight_trains_a_head_and_logs_its_loss(corpus, base, tmp_path, capsys):
    import json

    out = tmp_path / "ctc"
    assert _train(corpus, out, "--text-vocab", "phonemes", "--ctc-weight", "0.5") == 0
    assert load_tts(out / "tts.safetensors").config.ctc_head
    evals = [json.loads(line) for line in open(out / "metrics.jsonl") if '"eval"' in line]
    assert evals and {"val_ctc", "val_audio_ce", "val_ctc_feasible"} <= set(evals[-1])
    # fine-tuning a checkpoint without the head adds one and keeps the rest
    tuned = tmp_path / "tuned"
    assert _train(corpus, tuned, "--init", str(base / "tts.safetensors"), "--ctc-weight", "0.5", "--lr", "1e-12") == 0
    first, second = load_tts(base / "tts.safetensors"), load_tts(tuned / "tts.safetensors")
    assert first.ctc_head is None and second.ctc_head is not None
    for a, b in zip(_arrays(first), _arrays(eqx.tree_at(lambda m: m.ctc_head, second, None, is_leaf=lambda x: x is None))):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    assert _train(corpus, tmp_path / "bad", "--ctc-weight", "-1") == 2
    assert "--ctc-weight" in capsys.readouterr().err


def test_loss_by_position_tool_matches_the_unpadded_forward(corpus, base, tmp_path):
    import json

    import jax.numpy as jnp
    import optax

    tool = load_script("loss_by_position", "tools/loss_by_position.py")
    model = load_tts(base / "tts.safetensors")
    out = tmp_path / "pos.json"
    assert _run(tool, ["--checkpoint", str(base / "tts.safetensors"), "--tokens", str(corpus / "tokens" / "eval"),
                       "--bins", "2", "--attention", "--json", str(out)]) == 0
    found = json.loads(out.read_text())
    mel = model.config.conditioning.mel_config
    split = train_tts.load_split(str(corpus / "tokens" / "eval"), model.config, mel.n_frames(3 * mel.sample_rate), None)
    assert found["utterances"] == len(split.text) == 2
    sums, counts = np.zeros(2), np.zeros(2)
    for u in range(2):  # the plain forward of each utterance, no padding
        audio = jnp.asarray(split.audio[u])
        logits = model(model.conditioner(jnp.asarray(split.ref_mel[u])), jnp.asarray(split.text[u]), audio).audio_logits
        ce = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits[:-1], audio[1:]))[:len(audio) - 2]
        half = np.arange(ce.size) * 2 // ce.size
        np.add.at(sums, half, ce)
        np.add.at(counts, half, 1)
    np.testing.assert_allclose(found["audio_ce"], sums / counts, rtol=1e-4)
    heads = found["attention"]
    assert len(heads) == model.config.gpt.n_layer and all(0 <= h["text_share"] <= 1 for layer in heads for h in layer)
    assert _run(tool, ["--checkpoint", str(tmp_path / "none.safetensors"), "--tokens", "x"]) == 2


def test_align_prior_guides_training_but_not_the_held_out_loss(corpus, base, tmp_path, capsys):
    # a vanishing lr: the weights stay, so the held-out loss must be the checkpoint's own, without the prior
    out = tmp_path / "prior"
    assert _train(corpus, out, "--init", str(base / "tts.safetensors"), "--align-prior", "1", "--lr", "1e-12") == 0
    kept = float(read_safetensors_metadata(str(out / "tts.safetensors"))["val_loss"])
    np.testing.assert_allclose(kept, float(read_safetensors_metadata(str(base / "tts.safetensors"))["val_loss"]),
                               rtol=1e-6)
    assert _train(corpus, tmp_path / "bad", "--align-prior-layers", "9") == 2
    assert "--align-prior-layers" in capsys.readouterr().err
    # ...while a training step's loss (a key given) does see it
    model = load_tts(base / "tts.safetensors")
    split = train_tts.load_split(str(corpus / "tokens" / "train"), model.config, 44, None)
    batch = jax.numpy.asarray(train_tts.Batches(split, 4, 0, 16, 48)(0))
    key = jax.random.key(0)
    plain = train_tts.TTSTask(model.config, 16, 48, 44).loss(model, batch, key)[0]
    guided = train_tts.TTSTask(model.config, 16, 48, 44, align_prior=1.0).loss(model, batch, key)[0]
    held = train_tts.TTSTask(model.config, 16, 48, 44, align_prior=1.0).loss(model, batch, None)[0]
    assert abs(float(guided) - float(plain)) > 1e-4 and float(held) == float(
        train_tts.TTSTask(model.config, 16, 48, 44).loss(model, batch, None)[0])


def test_text_pointer_trains_on_forced_alignments_and_speaks(corpus, tmp_path, capsys):
    """CTC aid -> tools/align_tokens.py -> --text-pointer fine-tuning -> synthesize.py."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    align_tokens = load_script("align_tokens", "tools/align_tokens.py")
    tokens = tmp_path / "tokens"
    shutil.copytree(corpus / "tokens", tokens)
    ctc = tmp_path / "ctc"
    assert _train(corpus, ctc, "--text-vocab", "phonemes", "--ctc-weight", "0.5") == 0
    # no alignments yet: one line naming the tool
    assert _train(corpus, tmp_path / "p0", "--tokens", str(tokens / "train"), "--init", str(ctc / "tts.safetensors"),
                  "--text-pointer") == 2
    assert "align_tokens.py" in capsys.readouterr().err
    assert _run(align_tokens, ["--checkpoint", str(ctc / "tts.safetensors"),
                               "--tokens", f"{tokens / 'train'},{tokens / 'eval'}", "--spell-fraction", "0"]) == 0
    assert "6 of 6 utterances aligned" in capsys.readouterr().out
    rows = [json.loads(line) for line in open(tokens / "train.align.jsonl")]
    lengths = [json.loads(line)["length"] for line in open(tokens / "train.jsonl")]
    for r in rows:
        p = np.array(r["pointer"])
        assert len(p) == lengths[r["row"]] + 2 and p[-1] == len(r["text"]) - 1 and np.all(np.diff(p) >= 0)
    out = tmp_path / "pointer"
    assert _train(corpus, out, "--tokens", str(tokens / "train"), "--init", str(ctc / "tts.safetensors"),
                  "--text-pointer") == 0
    model = load_tts(out / "tts.safetensors")
    assert model.config.text_pointer and model.advance_head is not None
    evals = [json.loads(line) for line in open(out / "metrics.jsonl") if '"eval"' in line]
    assert "val_advance_bce" in evals[-1]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "tools/synthesize.py"), "--checkpoint", str(out / "tts.safetensors"),
                           "--dvae", str(corpus / "dvae.safetensors"), "--speaker", str(out / "speakers" / "low.npy"),
                           "--text", "A cat.", "--max-new-tokens", "40", "-o", str(tmp_path / "o.wav")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.wav").is_file()
    # loss_by_position reads the alignment's pointer: its figures equal the forward along it
    import jax.numpy as jnp
    import optax

    tool = load_script("loss_by_position", "tools/loss_by_position.py")
    assert _run(tool, ["--checkpoint", str(out / "tts.safetensors"), "--tokens", str(tokens / "eval"), "--bins", "1",
                       "--attention", "--json", str(tmp_path / "pos.json")]) == 0
    mel = model.config.conditioning.mel_config
    split = train_tts.load_split(str(tokens / "eval"), model.config, mel.n_frames(3 * mel.sample_rate), None)
    ces = []
    for u in range(len(split.text)):
        audio = jnp.asarray(split.audio[u])
        logits = model(model.conditioner(jnp.asarray(split.ref_mel[u])), jnp.asarray(split.text[u]), audio,
                       pointer=jnp.asarray(split.pointer[u])).audio_logits
        ces.append(np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits[:-1], audio[1:]))[:len(audio) - 2])
    np.testing.assert_allclose(json.loads((tmp_path / "pos.json").read_text())["audio_ce"][0],
                               np.concatenate(ces).mean(), rtol=1e-4)
