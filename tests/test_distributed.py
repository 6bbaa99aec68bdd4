"""Multi-process training: two processes on 127.0.0.1 joined by ``jax.distributed`` (gloo CPU
collectives), two simulated devices each, a 2 (data) x 2 (fsdp) mesh over the four. Each process
reads only its half of every batch; 3 steps must match the one-process, one-device run (<= 1e-5)."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from _tiny import assert_same_run, finish, shared_runs, start_worker, stop_all


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return shared_runs(tmp_path_factory)


def test_two_processes_match_one(runs):
    out = runs["root"] / "two_processes"
    coordinator = f"127.0.0.1:{free_port()}"
    procs = [start_worker(runs["cache"], "--data", runs["tokens"], "--out", str(out), "--result", str(out) + ".npz",
                          "--steps", "3", "--host-devices", "2", "--mesh", "2,2,1", "--ckpt-every", "3",
                          "--coordinator", coordinator, "--num-processes", "2", "--process-id", str(i))
             for i in range(2)]
    try:
        logs = [finish(p) for p in procs]
    finally:
        stop_all(procs)
    assert all("DONE" in log for log in logs)
    two = dict(np.load(str(out) + ".npz"))
    assert_same_run(runs["reference"].result(), two)
    # Both processes wrote their shards into one checkpoint directory (orbax), which holds step 3.
    assert (out / "checkpoints" / "3" / "state").is_dir()
