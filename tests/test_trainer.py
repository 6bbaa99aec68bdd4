"""Optimizer decay mask, schedule values, the LM loss against numpy, config errors, and one short
in-process fit checking what lands in metrics.jsonl (loss, lr, grad norm, tokens/s, MFU, eval, samples)."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import shutil

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _scripts import load_script
from _tiny import VOCAB, tiny_task, tiny_train_config, write_tokens
from xtts_jax.errors import UserError
from xtts_jax.inference.sampling import SamplingConfig, generate
from xtts_jax.train.checkpoint import flatten
from xtts_jax.train.data import TokenDataset
from xtts_jax.train.lm import VocabMap, unigram_entropy
from xtts_jax.train.metrics import read_jsonl
from xtts_jax.train.optim import TrainConfig, decay_mask, lr_schedule, make_optimizer
from xtts_jax.train.sharding import MeshConfig
from xtts_jax.train.trainer import Trainer, _shape_model

MATRICES = {"transformer.blocks.attn.c_attn.weight", "transformer.blocks.attn.c_proj.weight",
            "transformer.blocks.mlp.c_fc.weight", "transformer.blocks.mlp.c_proj.weight"}


@functools.lru_cache(maxsize=None)
def tiny_model(seed: int = 0):
    """One compiled init instead of hundreds of eager ops (slow on a busy machine)."""
    return eqx.filter_jit(tiny_task().init_model)(jax.random.PRNGKey(seed))


def shapes_only(model_fn):
    """A model with zero-stride numpy stand-ins for its arrays: right shapes, nothing computed."""
    return _shape_model(eqx.filter_eval_shape(model_fn, jax.random.PRNGKey(0)))


def test_decay_mask_matrices_only():
    task = tiny_task()
    model = shapes_only(task.init_model)
    logical = eqx.filter(task.logical_axes(model), lambda x: isinstance(x, jax.sharding.PartitionSpec))
    for spec in (None, logical):  # by shapes and names alone, and with logical axes
        decayed = {k for k, v in flatten(decay_mask(model, spec)).items() if v}
        # Not wte/wpe (embeddings), not the stacked [layers, embed] LayerNorm scales, not biases.
        assert decayed == MATRICES
    untied = dataclasses.replace(task.config, tie_embeddings=False)
    model = shapes_only(lambda k: type(model)(untied, key=k))
    assert {k for k, v in flatten(decay_mask(model)).items() if v} == MATRICES | {"lm_head.weight"}

    class WithEmbedding(eqx.Module):
        table: eqx.nn.Embedding
        proj: eqx.nn.Linear

    toy = WithEmbedding(eqx.nn.Embedding(10, 4, key=jax.random.PRNGKey(1)), eqx.nn.Linear(4, 4, key=jax.random.PRNGKey(2)))
    assert flatten(decay_mask(toy)) == {"table.weight": False, "proj.weight": True, "proj.bias": False}


def test_weight_decay_applies_only_where_masked():
    """With zero gradients AdamW's step is pure decay: p <- p - lr * wd * p on matrices, nothing elsewhere."""
    cfg = TrainConfig(lr=0.1, min_lr=0.1, warmup_steps=0, weight_decay=0.5, steps=10)
    model = tiny_model()
    params = eqx.filter(model, eqx.is_array)
    opt = make_optimizer(cfg, model)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = jax.jit(opt.update)(zeros, jax.jit(opt.init)(params), params)
    for name, u in flatten(updates).items():
        p = flatten(params)[name]
        expected = -0.1 * 0.5 * p if name in MATRICES else jnp.zeros_like(p)
        np.testing.assert_allclose(u, expected, rtol=1e-6, atol=1e-9, err_msg=name)


def test_schedule_matches_nanogpt_formula():
    cfg = TrainConfig(lr=6e-4, min_lr=6e-5, warmup_steps=10, steps=110)
    schedule = lr_schedule(cfg)

    def nanogpt(it):  # nanoGPT train.py get_lr, with lr_decay_iters = steps
        if it < cfg.warmup_steps:
            return cfg.lr * (it + 1) / cfg.warmup_steps
        if it > cfg.steps:
            return cfg.min_lr
        ratio = (it - cfg.warmup_steps) / (cfg.steps - cfg.warmup_steps)
        return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)

    for it in (0, 1, 9, 10, 11, 35, 60, 109, 110, 200):
        np.testing.assert_allclose(float(schedule(it)), nanogpt(it), rtol=1e-6, err_msg=str(it))


def test_lm_loss_matches_numpy_cross_entropy():
    task = tiny_task()
    model = tiny_model()
    batch = jnp.asarray(np.random.default_rng(0).integers(0, VOCAB, (3, 33)), jnp.int32)
    loss, metrics, logits = eqx.filter_jit(lambda m, b: (*task.loss(m, b, None), jax.vmap(m)(b[:, :-1])))(model, batch)
    logits = np.asarray(logits, np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    targets = np.asarray(batch[:, 1:])
    expected = -np.take_along_axis(logp, targets[..., None], -1).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert float(metrics["loss"]) == float(loss)


def test_chunked_cross_entropy_matches_full_logits():
    """Same loss and gradients as the plain loss, without the whole logits tensor."""
    task = tiny_task()
    chunked = dataclasses.replace(task, loss_chunk=8)
    model = tiny_model()
    batch = jnp.asarray(np.random.default_rng(1).integers(0, VOCAB, (4, 33)), jnp.int32)
    params, static = eqx.partition(model, eqx.is_array)

    @jax.jit
    def both(p):
        def value_and_grad(t):
            return jax.value_and_grad(lambda q: t.loss(eqx.combine(q, static), batch, None)[0])(p)
        return value_and_grad(task), value_and_grad(chunked)

    (loss, grads), (loss_c, grads_c) = both(params)
    np.testing.assert_allclose(float(loss_c), float(loss), rtol=1e-6)
    for name, g in flatten(grads).items():
        np.testing.assert_allclose(flatten(grads_c)[name], g, rtol=1e-4, atol=1e-7, err_msg=name)
    with pytest.raises(UserError, match="loss_chunk 5 must be 0 or divide block_size 32"):
        dataclasses.replace(task, loss_chunk=5)


def test_vocab_map_and_unigram_entropy():
    counts = np.zeros(60000, np.int64)
    counts[[5, 50256, 300]] = [2, 1, 1]
    vocab = VocabMap.from_counts(counts)
    assert vocab.ids == (5, 300, 50256)
    np.testing.assert_array_equal(vocab.to_compact(np.array([[50256, 5], [300, 300]])), [[2, 0], [1, 1]])
    np.testing.assert_array_equal(vocab.to_gpt2(np.array([2, 0, 1])), [50256, 5, 300])
    p = np.array([0.5, 0.25, 0.25])
    assert unigram_entropy(counts) == pytest.approx(-(p * np.log(p)).sum())


def test_config_errors_are_one_clear_sentence():
    with pytest.raises(UserError, match="TrainConfig.lr = -1.0 is out of range"):
        TrainConfig(lr=-1.0)
    with pytest.raises(UserError, match="TrainConfig.min_lr = 0.1 is out of range"):
        TrainConfig(lr=0.01, min_lr=0.1)
    with pytest.raises(UserError, match="batch_size 10 does not divide into grad_accum 4"):
        TrainConfig(batch_size=10, grad_accum=4)
    with pytest.raises(UserError, match="needs 2 devices but 1 are available"):
        Trainer(tiny_task(), tiny_train_config("unused"), MeshConfig(data=2))


def test_fit_logs_metrics_eval_and_samples(tmp_path):
    task = tiny_task()
    data = TokenDataset(write_tokens(str(tmp_path / "tokens.bin")), task.config.block_size)
    cfg = tiny_train_config(str(tmp_path / "run"), steps=4, lr=3e-3, eval_every=2, eval_steps=2,
                            sample_every=4, ckpt_every=2, keep_last=1, peak_flops=1e12)

    # The tiny task's 96 ids are not a story vocabulary: sample from a token prompt, show the ids.
    class Task(type(task)):
        def sample(self, model, key):
            cfg = SamplingConfig(temperature=0.0, max_new_tokens=8)
            return [" ".join(map(str, [0, 1, 2, 3] + generate(model, [[0, 1, 2, 3]], key, cfg)[0]))]

    trainer = Trainer(Task(task.config), cfg, train_data=lambda s: data.batch(0, s, cfg.batch_size),
                      eval_data=lambda i: data.batch(1, i, cfg.batch_size))
    out = trainer.fit(show_progress=False)
    records = read_jsonl(str(tmp_path / "run" / "metrics.jsonl"))
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    schedule = lr_schedule(cfg)
    for r in train:
        assert r["lr"] == pytest.approx(float(schedule(r["step"] - 1)), rel=1e-6)
        assert r["grad_norm"] > 0 and r["tokens_per_s"] > 0
        flops = task.config.flops_per_token(32)
        assert r["mfu"] == pytest.approx(flops * r["tokens_per_s"] / 1e12, rel=1e-6)
    assert train[-1]["loss"] < train[0]["loss"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4] and evals[-1]["val_loss"] == pytest.approx(out["val_loss"])
    manual = np.mean([float(trainer.eval_step(out["state"]["params"], data.batch(1, i, 16))["loss"]) for i in range(2)])
    assert out["val_loss"] == pytest.approx(manual, rel=1e-6)
    samples = [r for r in records if r["kind"] == "samples"]
    assert samples[0]["step"] == 4 and samples[0]["samples"][0].startswith("0 1 2 3 ")
    assert len(samples[0]["samples"][0].split()) == 12
    best = min(evals, key=lambda r: r["val_loss"])["step"]
    assert trainer.ckpt.steps() == sorted({best, 4}) and trainer.ckpt.best_step() == best  # last and best


def test_bfloat16_training_exports_the_models_own_config(tmp_path):
    """LMTask.compute_dtype trains in bfloat16 (the recipe's default on a CPU with bfloat16 kernels)
    and follows float32's losses; the exported model.safetensors keeps the config as given, so a
    loaded model computes as before."""
    from xtts_jax.train.lm import load_lm

    task = tiny_task()
    data = TokenDataset(write_tokens(str(tmp_path / "tokens.bin")), task.config.block_size)
    losses = {}
    for dtype in ("float32", "bfloat16"):
        cfg = tiny_train_config(str(tmp_path / dtype), steps=3, lr=3e-3, eval_every=3)
        trainer = Trainer(dataclasses.replace(task, compute_dtype=dtype), cfg,
                          train_data=lambda s: data.batch(0, s, cfg.batch_size),
                          eval_data=lambda i: data.batch(1, i, cfg.batch_size))
        out = trainer.fit(show_progress=False)
        assert trainer.model(out["state"]["params"]).config.dtype == jnp.dtype(dtype)
        losses[dtype] = [r["loss"] for r in read_jsonl(str(tmp_path / dtype / "metrics.jsonl")) if r["kind"] == "train"]
        model, loaded = load_lm(tmp_path / dtype / "model.safetensors")
        assert model.config == task.config and loaded.compute_dtype is None
        assert model.config.dtype == jnp.float32  # "auto" on the CPU backend
    f32, bf16 = np.asarray(losses["float32"]), np.asarray(losses["bfloat16"])
    assert np.all(f32 != bf16) and np.allclose(bf16, f32, rtol=0.02), (f32, bf16)


def test_recipe_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "recipes", "tinystories_pretrain.py")
    spec = importlib.util.spec_from_file_location("tinystories_pretrain", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train.bin").write_bytes(b"")
    (empty / "val.bin").write_bytes(b"")
    cases = {
        ("--data", str(tmp_path / "missing")): "has no train.bin",
        ("--preset", "gpt2"): "the gpt2 preset needs --data",
        ("--data", str(empty)): f"token file {empty / 'train.bin'} is empty",
        ("--batch_size", "0"): "TrainConfig.batch_size = 0 is out of range",
        ("--config", str(tmp_path / "nope.json")): "cannot read config file",
    }
    for argv, message in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            recipe.main(list(argv) + ["--out", str(tmp_path / "run")])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1, (argv, err)
        assert err[0].startswith("error: ") and message in err[0], (argv, err)


def _lm_trainer(task, data, **overrides) -> Trainer:
    cfg = tiny_train_config(**overrides)
    return Trainer(task, cfg, train_data=lambda s: data.batch(0, s, cfg.batch_size),
                   eval_data=lambda i: data.batch(1, i, cfg.batch_size))


def test_resume_keeps_the_schedule_and_one_metrics_history(tmp_path, capsys):
    """--resume with nothing there says so; a resume says from where; asking for more steps keeps
    the checkpoint's cosine (the extra steps at min_lr) instead of restarting it; metrics.jsonl
    drops what was logged past the checkpoint and marks the resume."""
    task = tiny_task()
    data = TokenDataset(write_tokens(str(tmp_path / "tokens.bin")), task.config.block_size)
    run = tmp_path / "run"
    common = dict(out_dir=str(run), ckpt_every=2, lr=3e-3, min_lr=3e-4, warmup_steps=1)
    first = _lm_trainer(task, data, steps=4, **common)
    first.fit(resume=True, show_progress=False)
    assert "nothing to resume: no checkpoint in" in capsys.readouterr().out
    schedule = lr_schedule(first.cfg)  # cosine from step 1 to 4
    # The run dies after logging steps 3 and 4 but before step 4's save is on disk.
    shutil.rmtree(run / "checkpoints" / "4")

    _lm_trainer(task, data, steps=8, **common).fit(resume=True, show_progress=False)
    said = capsys.readouterr().out
    assert f"resumed from step 2 ({run / 'checkpoints'})" in said
    assert "steps 5-8 train at min_lr 0.0003" in said
    records = read_jsonl(str(run / "metrics.jsonl"))
    assert [(r["kind"], r["step"]) for r in records] == [
        ("train", 1), ("train", 2), ("resume", 2), *(("train", s) for s in range(3, 9))]
    lrs = [r["lr"] for r in records if r["kind"] == "train"]
    np.testing.assert_allclose(lrs, [float(schedule(s)) for s in range(8)], rtol=1e-6)
    np.testing.assert_allclose(lrs[4:], 3e-4, rtol=1e-6)  # continued at its end, not re-stretched
    # The schedule's end travels with the run, so a second resume keeps it too.
    assert json.loads((run / "config.json").read_text())["train"]["schedule_steps"] == 4


def test_checkpoints_on_a_time_interval(tmp_path):
    """With no step interval, saves still come at log steps once ckpt_every_seconds have passed."""
    assert 0 < TrainConfig().ckpt_every_seconds <= 600  # on by default: a crash early loses minutes, not all
    task = tiny_task()
    data = TokenDataset(write_tokens(str(tmp_path / "tokens.bin")), task.config.block_size)
    trainer = _lm_trainer(task, data, out_dir=str(tmp_path / "run"), steps=6, ckpt_every=0, log_every=2,
                          keep_last=10, ckpt_every_seconds=1e-6)
    trainer.fit(show_progress=False)
    assert trainer.ckpt.steps() == [2, 4, 6]


def test_bar_counts_finished_steps_and_shows_eval(tmp_path, monkeypatch):
    """The bar moves once a step has finished on the device (not when it is queued, which made it
    race ahead and stall at each log point), and reads "eval" while the evaluation runs."""
    from xtts_jax.train import metrics as metrics_mod

    @jax.jit
    def slow(loss):  # ~0.1 s of device work, so a queued step is visibly unfinished
        m = jnp.full((400, 400), 1e-3)
        return jax.lax.fori_loop(0, 200, lambda i, a: jnp.tanh(a @ m), m).sum() * 0 + loss

    task = tiny_task()
    data = TokenDataset(write_tokens(str(tmp_path / "tokens.bin")), task.config.block_size)
    trainer = _lm_trainer(task, data, out_dir=str(tmp_path / "run"), steps=6, log_every=100, eval_every=3)
    real_step, returned, loggers, shown, evaluating = trainer.train_step, [], [], [], []

    def step(state, batch):
        state, metrics = real_step(state, batch)
        returned.append(dict(metrics, slow=slow(metrics["loss"])))
        return state, returned[-1]

    def progress(self, n):
        shown.append((n, all(x.is_ready() for x in jax.tree.leaves(returned[n - 1]))))

    real_init, real_eval = metrics_mod.MetricsLogger.__init__, trainer.evaluate_metrics
    monkeypatch.setattr(metrics_mod.MetricsLogger, "__init__",
                        lambda self, *a, **k: loggers.append(self) or real_init(self, *a, **k))
    monkeypatch.setattr(metrics_mod.MetricsLogger, "progress", progress)
    monkeypatch.setattr(trainer, "train_step", step)
    monkeypatch.setattr(trainer, "evaluate_metrics", lambda p: evaluating.append(loggers[0].bar.desc) or real_eval(p))
    trainer.fit(show_progress=True)
    assert [n for n, _ in shown] == sorted({n for n, _ in shown}) and shown[-1][0] == 6
    assert all(ready for _, ready in shown), shown
    assert evaluating == ["eval", "eval"]  # at steps 3 and 6


def test_recipe_help_shows_the_preset_and_one_flag_style(capsys):
    """--help shows the defaults that will run (the preset's), hyphenated flags, one run-folder
    flag; the underscore spelling still works, unlisted."""
    recipe = load_script("tinystories_pretrain", "recipes/tinystories_pretrain.py")
    for argv, steps in (([], 300), (["--preset", "gpt2"], 20000)):
        with pytest.raises(SystemExit):
            recipe.parse([*argv, "--help"])
        text = capsys.readouterr().out
        assert re.search(rf"--steps STEPS\s+default {steps}\n", text), text
        assert "--batch-size" in text and "--model.n-layer" in text and "--warmup-steps" in text
        assert "_" not in "".join(re.findall(r"--[\w.-]+", text)), "underscore flags in --help"
        assert "--out-dir" not in text and "--out " in text
    args = recipe.parse(["--batch_size", "8", "--model.n_layer", "3", "--min-lr", "1e-5"])
    assert (args.batch_size, getattr(args, "model.n_layer"), args.min_lr) == (8, 3, 1e-5)
