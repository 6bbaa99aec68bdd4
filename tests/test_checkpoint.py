"""Checkpoints: exact resume after SIGKILL, a half-written save ignored, keep-last-and-best, another
model's checkpoint refused. (Restore onto another mesh and the safetensors export: test_sharding.)"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _tiny import finish, start_worker, stop_all, tiny_task, tiny_train_config, write_tokens
from xtts_jax.errors import UserError
from xtts_jax.train.checkpoint import Checkpointer
from xtts_jax.train.metrics import read_jsonl
from xtts_jax.train.trainer import Trainer

RUN = ["--steps", "20", "--ckpt-every", "10"]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """Train 20 steps straight; alongside, train in a process SIGKILLed after step 10's checkpoint,
    leave a half-written step-15 save behind, then resume that run to step 20."""
    root = tmp_path_factory.mktemp("resume")
    tokens, cache = write_tokens(str(root / "tokens.bin")), str(root / "jax_cache")
    straight = start_worker(cache, "--data", tokens, "--out", str(root / "straight"),
                            "--result", str(root / "straight.npz"), *RUN)
    killed = start_worker(cache, "--data", tokens, "--out", str(root / "killed"), "--hang-at", "10", *RUN)
    procs = [straight, killed]
    try:
        for line in killed.stdout:  # the worker prints this once step 10 is on disk, then hangs
            if line.startswith("CHECKPOINT 10"):
                break
        else:
            raise AssertionError(f"worker ended before its checkpoint: {killed.wait()}")
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        ckpts = root / "killed" / "checkpoints"
        assert sorted(os.listdir(ckpts)) == ["10"]
        # A save cut off halfway: orbax's temporary directory, with a truncated array file in it.
        partial = ckpts / "15.orbax-checkpoint-tmp-1234567"
        shutil.copytree(ckpts / "10", partial)
        for dirpath, _, files in os.walk(partial):
            for name in files:
                with open(os.path.join(dirpath, name), "r+b") as f:
                    f.truncate(os.path.getsize(os.path.join(dirpath, name)) // 2)
        resume = start_worker(cache, "--data", tokens, "--out", str(root / "killed"), "--resume",
                              "--result", str(root / "resumed.npz"), *RUN)
        procs.append(resume)
        finish(straight)
        finish(resume)
    finally:
        stop_all(procs)
    return {"root": root, "straight": dict(np.load(root / "straight.npz")),
            "resumed": dict(np.load(root / "resumed.npz"))}


def test_resume_after_sigkill_is_exact(resumed):
    straight, again = resumed["straight"], resumed["resumed"]
    np.testing.assert_array_equal(straight["steps"], np.arange(1, 21))
    np.testing.assert_array_equal(again["steps"], np.arange(11, 21))
    np.testing.assert_array_equal(again["losses"], straight["losses"][10:])
    params = [k for k in straight if k.startswith("param:")]
    for k in params:
        np.testing.assert_array_equal(again[k], straight[k], err_msg=k)
    # The JSONL log holds both halves of the interrupted run; the half-written save is gone.
    records = read_jsonl(str(resumed["root"] / "killed" / "metrics.jsonl"))
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 21))
    assert sorted(os.listdir(resumed["root"] / "killed" / "checkpoints")) == ["10", "20"]


def test_checkpoint_of_another_model_is_refused(resumed):
    out = str(resumed["root"] / "killed")
    task = tiny_task()
    other = dataclasses.replace(task, config=dataclasses.replace(task.config, n_embd=32))
    trainer = Trainer(other, tiny_train_config(out, steps=20), train_data=lambda step: None)
    with pytest.raises(UserError, match=r"is of another model: params\.transformer\.blocks\.attn\.c_attn\.bias has shape \(2, 192\), this model needs \(2, 96\)"):
        trainer.fit(resume=True, show_progress=False)
    with pytest.raises(UserError, match="already holds checkpoints .* pass --resume"):
        Trainer(task, tiny_train_config(out, steps=20), train_data=lambda step: None).fit(show_progress=False)


def test_keep_last_and_best(tmp_path):
    ckpt = Checkpointer(str(tmp_path / "ck"), keep_last=2, async_save=False)
    losses = {2: 0.5, 4: 1.0, 6: 2.0}
    for step in range(1, 7):
        state = {"w": jnp.full((3, 4), float(step)), "step": jnp.int32(step)}
        ckpt.save(step, state, {"note": f"step {step}"}, val_loss=losses.get(step))
    ckpt.wait()
    assert ckpt.steps() == [2, 5, 6]  # the last two, and the best validation loss
    assert ckpt.best_step() == 2
    like = {"w": jax.ShapeDtypeStruct((3, 4), jnp.float32), "step": jax.ShapeDtypeStruct((), jnp.int32)}
    state, meta = ckpt.restore(like, step=2)
    np.testing.assert_array_equal(state["w"], np.full((3, 4), 2.0))
    assert meta["note"] == "step 2" and meta["val_loss"] == 0.5
    with pytest.raises(UserError, match="no checkpoint at step 3"):
        ckpt.restore(like, step=3)
    with pytest.raises(UserError, match="another model: it has \\['step'\\] and lacks \\['x'\\]"):
        ckpt.restore({"w": like["w"], "x": like["step"]})
    ckpt.close()
