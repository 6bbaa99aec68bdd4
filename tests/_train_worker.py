"""A training run in its own process, for tests that need a fresh jax: simulated devices, several
processes (jax.distributed over gloo), or a process to SIGKILL. Writes losses and final parameters
to ``--result`` (npz) from process 0.

    python tests/_train_worker.py --data tokens.bin --out run --steps 3 --mesh 2,4,1 --result r.npz
"""

from __future__ import annotations

import argparse
import os
import time


def parse(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--result", default=None)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--mesh", default="1,1,1", help="data,fsdp,tensor")
    p.add_argument("--devices", type=int, default=0, help="use the first N devices (0: all)")
    p.add_argument("--host-devices", type=int, default=1, help="simulated CPU devices per process")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--ckpt-every", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--hang-at", type=int, default=0, help="after the checkpoint of this step, print and hang")
    p.add_argument("--coordinator", default=None, help="host:port for jax.distributed")
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--process-id", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    # The device count is fixed when jax starts, so it is set before the import.
    # Optimisation level 0 halves compile time of these tiny programs; every run in a test uses it.
    os.environ["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={args.host_devices} "
                               "--xla_backend_optimization_level=0")
    import jax

    if args.coordinator:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    import numpy as np

    from _tiny import tiny_task, tiny_train_config
    from xtts_jax.train.checkpoint import _to_host, flatten
    from xtts_jax.train.data import TokenDataset
    from xtts_jax.train.sharding import MeshConfig
    from xtts_jax.train.trainer import Trainer

    task = tiny_task()
    cfg = tiny_train_config(args.out, steps=args.steps, batch_size=args.batch_size,
                            grad_accum=args.grad_accum, ckpt_every=args.ckpt_every)
    data = TokenDataset(args.data, task.config.block_size)
    pi, pc = jax.process_index(), jax.process_count()
    devices = jax.devices()[: args.devices] if args.devices else None
    trainer = Trainer(task, cfg, MeshConfig(*map(int, args.mesh.split(","))),
                      lambda s: data.batch(cfg.seed, s, cfg.batch_size, pi, pc), devices=devices)
    if args.hang_at:
        def hang(step):
            if step == args.hang_at:
                print(f"CHECKPOINT {step}", flush=True)
                time.sleep(600)  # the test kills us here
        trainer.on_checkpoint = hang
    out = trainer.fit(resume=args.resume, show_progress=False)
    params = {k: _to_host(v) for k, v in flatten(out["state"]["params"]).items()}
    if args.result and pi == 0:
        steps = np.array([h["step"] for h in out["history"]])
        losses = np.array([h["loss"] for h in out["history"]])
        # Where the 2-D weights and their Adam moments live, to check they are sharded alike.
        specs = {f"spec:{k}": np.array(str(v.sharding.spec)) for k, v in flatten(out["state"]).items()}
        np.savez(args.result, steps=steps, losses=losses, **{"param:" + k: v for k, v in params.items()},
                 **specs)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
