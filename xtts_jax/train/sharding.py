"""Device mesh and the one rule table that maps logical axis names to mesh axes.

Models name the axes of their parameters ("embed", "mlp", "heads", "vocab", "layers", ...); this
file alone decides where each name lives on the mesh, as MaxText's ``logical_axis_rules`` and
Levanter's axis mappings do. The same model code then runs on 1 CPU, 8 simulated devices, a GPU,
or many hosts. Optimizer state follows the parameter it belongs to (see ``state_shardings``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import equinox as eqx
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from xtts_jax.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")

# Logical name -> mesh axis (or tuple of axes, or None = replicated). As MaxText's defaults:
# the batch is split over every data-parallel axis, parameters over fsdp (ZeRO-3 style) along
# their embedding dimension, and the wide matmul dimensions over tensor (Megatron style).
RULES: Mapping[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "embed": "fsdp",
    "mlp": "tensor",
    "heads": "tensor",
    "kv": None,
    "vocab": "tensor",
    "pos": None,
    "layers": None,
}


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh shape. One axis may be -1: it takes every device the other axes leave."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1

    def shape(self, n_devices: int) -> tuple[int, int, int]:
        sizes = [self.data, self.fsdp, self.tensor]
        if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
            raise UserError(f"mesh sizes must be positive with at most one -1, got {sizes}")
        fixed = math.prod(s for s in sizes if s != -1)
        if -1 in sizes:
            if n_devices % fixed:
                raise UserError(f"mesh {sizes} does not divide the {n_devices} devices")
            sizes[sizes.index(-1)] = n_devices // fixed
        if math.prod(sizes) != n_devices:
            raise UserError(
                f"mesh data={sizes[0]} fsdp={sizes[1]} tensor={sizes[2]} needs "
                f"{math.prod(sizes)} devices but {n_devices} are available")
        return tuple(sizes)


def devices_per_cpu_core(batch_size: int) -> int:
    """Expose the host's CPU cores as separate JAX CPU devices, so the default mesh (data = -1)
    splits every batch over them: one share of the rows per core. Call before JAX's first
    computation (recipes call it first thing). On XLA's CPU backend one device kept only about 1.2
    of 2 cores busy on the demo-size training step; two devices made it 1.16x faster
    (bench/bench_train_cpu.py). The count is the largest divisor of ``batch_size`` within the usable
    cores. It only concerns CPU devices: on a GPU host it changes nothing the trainer uses. Leaves
    an explicit ``--xla_force_host_platform_device_count`` alone, and says nothing once JAX has
    started (returns 1 then). Returns the count set."""
    import os

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = max(d for d in range(1, cores + 1) if batch_size % d == 0)
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # backends already up (a test, a notebook): keep what they have
        return 1
    return n


def make_mesh(cfg: MeshConfig, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ("data", "fsdp", "tensor") mesh over all devices of all processes."""
    devices = list(jax.devices() if devices is None else devices)
    shape = cfg.shape(len(devices))
    # Auto axes: jit propagates shardings from the in/out specs we give (GSPMD), no explicit types.
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def _is_spec(x: Any) -> bool:
    return isinstance(x, P)


def logical_to_mesh(spec: P, shape: tuple[int, ...], mesh: Mesh, where: str = "parameter",
                    rules: Mapping[str, Any] = RULES) -> P:
    """Translate one PartitionSpec of logical names into mesh axes, checking divisibility."""
    if len(spec) > len(shape):
        raise UserError(f"{where} has shape {shape} but {len(spec)} logical axes {tuple(spec)}")
    used: set[str] = set()
    out = []
    for dim, name in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        axes = rules.get(name) if name is not None else None
        if name is not None and name not in rules:
            raise UserError(f"{where} uses logical axis {name!r}, which has no sharding rule")
        axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
        # An axis of size 1 shards nothing; a mesh axis may appear only once per array.
        axes = tuple(a for a in axes if mesh.shape[a] > 1 and a not in used)
        size = math.prod(mesh.shape[a] for a in axes)
        if dim % size:
            raise UserError(
                f"{where} dimension {name!r} of size {dim} does not divide over mesh axes "
                f"{axes} of size {size}")
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return P(*out)


def fallback_spec(shape: tuple[int, ...], mesh: Mesh) -> P:
    """For models without logical axes: shard the largest dimension divisible by fsdp, else none."""
    n = mesh.shape["fsdp"]
    if n > 1:
        for i in sorted(range(len(shape)), key=lambda i: -shape[i]):
            if shape[i] % n == 0:
                return P(*([None] * i + ["fsdp"]))
    return P()


def param_shardings(params: Any, mesh: Mesh, logical: Any | None = None) -> Any:
    """NamedSharding per array leaf of ``params`` (None elsewhere), from its logical spec if given."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    if logical is None:
        specs = [fallback_spec(x.shape, mesh) for _, x in leaves]
    else:
        logical_leaves = jax.tree_util.tree_leaves(logical, is_leaf=_is_spec)
        if len(logical_leaves) != len(leaves):
            raise UserError(f"logical axes give {len(logical_leaves)} specs for {len(leaves)} arrays")
        specs = [logical_to_mesh(s, x.shape, mesh, jax.tree_util.keystr(path))
                 for (path, x), s in zip(leaves, logical_leaves)]
    return jax.tree_util.tree_unflatten(treedef, [NamedSharding(mesh, s) for s in specs])


def logical_specs_for(model: eqx.Module, logical_axes_fn: Callable | None) -> Any | None:
    """Logical specs matching ``eqx.filter(model, eqx.is_array)``, or None for the fallback."""
    if logical_axes_fn is None:
        return None
    # Keep only the specs that sit at array leaves, so the spec tree flattens like the params.
    return eqx.filter(logical_axes_fn(model), _is_spec)


def state_shardings(state: Any, params: Any, p_shardings: Any, mesh: Mesh) -> Any:
    """Shardings for a whole train state: every optimizer moment takes its parameter's sharding.

    optax states (Adam's mu and nu) hold trees shaped like the parameters, or like a part of them
    (a GAN task's generator); an array whose path ends with the path, or the tail of the path, of
    exactly one parameter of its shape gets that parameter's sharding (ties are broken by the keys
    above the tail: ``opt_state.generator...`` belongs to ``params.generator``). The rest
    (counters, PRNG keys, leaves still ambiguous) is replicated.
    """
    by_suffix: dict[tuple, list] = {}
    p_leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    s_leaves = jax.tree_util.tree_leaves(p_shardings)
    for (path, x), sharding in zip(p_leaves, s_leaves):
        for n in range(len(path)):
            by_suffix.setdefault(tuple(path[n:]), []).append((tuple(path[:n]), x.shape, sharding))
    replicated = NamedSharding(mesh, P())

    def pick(path, x):
        for n in range(len(path)):
            fits = [(head, s) for head, shape, s in by_suffix.get(tuple(path[n:]), [])
                    if shape == getattr(x, "shape", None)]
            if len(fits) > 1:  # e.g. generator.conv.weight and disc.conv.weight: use the keys above
                fits = [(head, s) for head, s in fits if set(head) <= set(path[:n])]
            if len(fits) == 1:
                return fits[0][1]
            if fits:
                break
        return replicated

    return jax.tree_util.tree_map_with_path(pick, state)


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Batch dimension over every data-parallel axis, the rest replicated."""
    return NamedSharding(mesh, P(RULES["batch"], *([None] * (ndim - 1))))


def data_parallel_size(mesh: Mesh) -> int:
    return math.prod(mesh.shape[a] for a in RULES["batch"])


def check_batch(batch_size: int, mesh: Mesh, grad_accum: int = 1) -> None:
    """A global batch must split into micro-batches that each divide over the data axes."""
    n = data_parallel_size(mesh)
    if batch_size % grad_accum or (batch_size // grad_accum) % n or batch_size % jax.process_count():
        raise UserError(
            f"batch_size {batch_size} with grad_accum {grad_accum} does not divide over "
            f"{n} data-parallel devices and {jax.process_count()} processes")


def global_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """Assemble the global batch from each process's rows (its share, in process order)."""
    sharding = batch_sharding(mesh, local.ndim)
    shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
    return jax.make_array_from_process_local_data(sharding, local, shape)
