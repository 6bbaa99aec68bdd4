"""Tiny shared fixtures for the trainer tests: a 2-layer GPT over 96 token ids and a token file."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from xtts_jax.models.gpt_config import get_config
from xtts_jax.train.lm import LMTask
from xtts_jax.train.optim import TrainConfig

VOCAB = 96


def tiny_task() -> LMTask:
    # n_embd 64 and the padded vocabulary (128) divide over fsdp=4 and tensor=2.
    return LMTask(get_config("nano", vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=64))


def tiny_train_config(out_dir: str, **overrides) -> TrainConfig:
    """lr stays small because sharded and single-device runs differ by Adam amplifying rounding:
    gradients that are zero in exact arithmetic (attention key biases) come out ~1e-10 and Adam
    turns them into updates of lr * g / eps, different on each mesh."""
    base = dict(steps=3, batch_size=16, lr=5e-4, min_lr=5e-5, warmup_steps=2, eval_every=0,
                eval_steps=2, ckpt_every=0, keep_last=3, log_every=1, sample_every=0, seed=0,
                out_dir=out_dir)
    return TrainConfig(**{**base, **overrides})


def write_tokens(path: str, n: int = 20_000, seed: int = 0) -> str:
    """A learnable token stream: a noisy walk over the ids, stored as uint16 like prepare does."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([1, 2, 3, 5], size=n, p=[0.5, 0.25, 0.15, 0.1])
    np.asarray(np.cumsum(steps) % VOCAB, np.uint16).tofile(path)
    return path


HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_train_worker.py")


def worker_env(cache_dir: str) -> dict:
    env = dict(os.environ)
    env.update(JAX_COMPILATION_CACHE_DIR=cache_dir, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", JAX_PLATFORMS="cpu")
    return env


def start_worker(cache_dir: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WORKER, *args], env=worker_env(cache_dir), cwd=HERE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    """Wait for a worker; its output tail is the failure message. A hung worker is killed."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"worker still running after {timeout} s:\n{out[-3000:]}") from None
    assert proc.returncode == 0, out[-3000:]
    return out


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Kill workers left running when a test fails (a lone jax.distributed peer waits forever)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Pending:
    """A worker started now and read later, so it runs alongside a test's own workers."""

    def __init__(self, proc: subprocess.Popen, result: str):
        self.proc, self.path, self.value = proc, result, None

    def result(self) -> dict:
        if self.value is None:
            finish(self.proc)
            self.value = dict(np.load(self.path))
        return self.value


_SHARED: dict = {}


def shared_runs(tmp_path_factory) -> dict:
    """One per pytest session, whichever test file asks first: a token file, a persistent
    compilation cache for the workers, and the reference run (one process, one device, 3 steps)
    that every parallel layout must reproduce."""
    root = tmp_path_factory.getbasetemp() / "trainer_shared"
    if str(root) not in _SHARED:
        root.mkdir(exist_ok=True)
        tokens, cache = write_tokens(str(root / "tokens.bin")), str(root / "jax_cache")
        out = str(root / "single")
        proc = start_worker(cache, "--data", tokens, "--out", out, "--result", out + ".npz", "--steps", "3")
        _SHARED[str(root)] = {"root": root, "tokens": tokens, "cache": cache,
                              "reference": Pending(proc, out + ".npz")}
    return _SHARED[str(root)]


def assert_same_run(a: dict, b: dict, tol: float = 1e-5) -> None:
    """Same steps, losses and final parameters within ``tol``."""
    np.testing.assert_array_equal(a["steps"], b["steps"])
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=0, atol=tol)
    names = [k for k in a if k.startswith("param:")]
    assert names and set(names) == {k for k in b if k.startswith("param:")}
    for k in names:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=tol, err_msg=k)
