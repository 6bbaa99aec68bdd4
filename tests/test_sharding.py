"""Sharding: the rule table, the fallback, and a 2 (data) x 4 (fsdp) mesh of 8 simulated CPU devices
training exactly like one device (<= 1e-5), with grad accumulation on the sharded side.

The multi-device runs happen in subprocesses (``_train_worker.py``), because jax fixes its device
count when it starts; they share one persistent compilation cache for the session.
"""

from __future__ import annotations

import os

import equinox as eqx
import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh, AxisType, PartitionSpec as P

from _tiny import assert_same_run, finish, shared_runs, start_worker, tiny_task, tiny_train_config
from xtts_jax.errors import UserError
from xtts_jax.train import sharding as shd
from xtts_jax.train.checkpoint import flatten, load_safetensors, read_safetensors_metadata
from xtts_jax.train.trainer import Trainer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return shared_runs(tmp_path_factory)


def abstract_mesh(data: int, fsdp: int, tensor: int) -> AbstractMesh:
    return AbstractMesh((data, fsdp, tensor), shd.MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def test_rule_table_translates_logical_names():
    mesh = abstract_mesh(2, 4, 2)
    assert shd.logical_to_mesh(P("embed", "mlp"), (64, 256), mesh) == P("fsdp", "tensor")
    assert shd.logical_to_mesh(P("layers", "embed", "heads"), (2, 64, 192), mesh) == P(None, "fsdp", "tensor")
    assert shd.logical_to_mesh(P("batch", None), (16, 33), mesh) == P(("data", "fsdp"), None)
    # Axes of size 1 shard nothing and are dropped; missing trailing names mean replicated.
    assert shd.logical_to_mesh(P("embed", "vocab"), (64, 128), abstract_mesh(8, 1, 1)) == P(None, None)
    assert shd.logical_to_mesh(P("embed"), (64, 3), mesh) == P("fsdp", None)


def test_rule_table_errors_name_the_parameter():
    mesh = abstract_mesh(1, 4, 1)
    with pytest.raises(UserError, match=r"wte dimension 'embed' of size 6 does not divide over mesh axes \('fsdp',\) of size 4"):
        shd.logical_to_mesh(P("vocab", "embed"), (128, 6), mesh, "wte")
    with pytest.raises(UserError, match="logical axis 'experts'"):
        shd.logical_to_mesh(P("experts"), (8,), mesh)


def test_fallback_shards_largest_divisible_dimension():
    mesh = abstract_mesh(2, 4, 1)
    assert shd.fallback_spec((3, 8, 16), mesh) == P(None, None, "fsdp")
    assert shd.fallback_spec((12, 6), mesh) == P("fsdp")
    assert shd.fallback_spec((3, 5), mesh) == P()
    assert shd.fallback_spec((16,), abstract_mesh(8, 1, 1)) == P()


def test_mesh_config_sizes_and_errors():
    assert shd.MeshConfig().shape(8) == (8, 1, 1)
    assert shd.MeshConfig(data=-1, fsdp=4).shape(8) == (2, 4, 1)
    with pytest.raises(UserError, match="needs 6 devices but 8 are available"):
        shd.MeshConfig(data=2, fsdp=3).shape(8)
    with pytest.raises(UserError, match="does not divide the 8 devices"):
        shd.MeshConfig(data=-1, fsdp=3).shape(8)
    with pytest.raises(UserError, match="at most one -1"):
        shd.MeshConfig(data=-1, fsdp=-1).shape(8)


def test_gpt_logical_axes_cover_every_parameter():
    """Every GPT array gets a spec, and on a 2x4x2 mesh the matrices are split as the table says."""
    model = tiny_task().init_model(jax.random.PRNGKey(0))
    specs = shd.logical_specs_for(model, tiny_task().logical_axes)
    params = eqx.filter(model, eqx.is_array)
    leaves = jax.tree_util.tree_leaves_with_path(params)
    spec_leaves = jax.tree_util.tree_leaves(specs, is_leaf=lambda x: isinstance(x, P))
    assert len(leaves) == len(spec_leaves)
    mesh = abstract_mesh(2, 4, 2)
    got = {jax.tree_util.keystr(p): shd.logical_to_mesh(s, x.shape, mesh) for (p, x), s in zip(leaves, spec_leaves)}
    assert got[".wte"] == P("tensor", "fsdp")
    assert got[".transformer.blocks.mlp.c_fc.weight"] == P(None, "fsdp", "tensor")
    assert got[".transformer.blocks.ln_1.weight"] == P(None, "fsdp")


def test_optimizer_state_follows_its_parameter():
    """Adam moments take their parameter's sharding, also for per-module optimizers (GAN tasks)."""
    import optax

    mesh = abstract_mesh(1, 4, 1)
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, np.float32)  # noqa: E731
    # Same names and shapes in both halves, split differently: only the keys above tell them apart.
    params = {"generator": {"conv": {"weight": f32(8, 8)}, "bias": f32(3)},
              "disc": {"conv": {"weight": f32(8, 8)}}}
    logical = {"generator": {"conv": {"weight": P("embed", None)}, "bias": P(None)},
               "disc": {"conv": {"weight": P(None, "embed")}}}
    shardings = shd.param_shardings(params, mesh, logical)
    opt_state = {k: jax.eval_shape(optax.adam(1e-3).init, v) for k, v in params.items()}
    state = {"params": params, "opt_state": opt_state, "step": jax.ShapeDtypeStruct((), np.int32)}
    got = {jax.tree_util.keystr(p): s.spec for p, s in
           jax.tree_util.tree_flatten_with_path(shd.state_shardings(state, params, shardings, mesh))[0]}
    assert got["['params']['generator']['conv']['weight']"] == P("fsdp", None)
    assert got["['params']['disc']['conv']['weight']"] == P(None, "fsdp")
    assert got["['opt_state']['generator'][0].mu['conv']['weight']"] == P("fsdp", None)
    assert got["['opt_state']['disc'][0].nu['conv']['weight']"] == P(None, "fsdp")
    assert got["['opt_state']['generator'][0].count"] == P() and got["['step']"] == P()
    assert got["['opt_state']['generator'][0].mu['bias']"] == P(None)


def test_check_batch():
    mesh = abstract_mesh(2, 4, 1)
    shd.check_batch(16, mesh, grad_accum=2)
    with pytest.raises(UserError, match="batch_size 12 with grad_accum 1 does not divide over 8"):
        shd.check_batch(12, mesh)


@pytest.fixture(scope="module")
def sharded(runs):
    """3 steps on a 2 (data) x 4 (fsdp) mesh of 8 simulated devices, 2 micro-batches a step."""
    out = runs["root"] / "mesh2x4"
    proc = start_worker(runs["cache"], "--data", runs["tokens"], "--out", str(out), "--result", str(out) + ".npz",
                        "--steps", "3", "--host-devices", "8", "--mesh", "2,4,1", "--grad-accum", "2",
                        "--ckpt-every", "3")
    finish(proc)
    return {"out": str(out), **np.load(str(out) + ".npz")}


def test_2x4_mesh_with_grad_accum_matches_one_device(runs, sharded):
    assert_same_run(runs["reference"].result(), sharded)
    # Parameters and their Adam moments are split over fsdp the same way.
    spec = lambda name: str(sharded[f"spec:{name}"])  # noqa: E731
    w = "transformer.blocks.mlp.c_fc.weight"
    assert spec(f"params.{w}") == str(P(None, "fsdp", None))
    mu = [k for k in sharded if k.startswith("spec:opt_state") and k.endswith(f"mu.{w}")]
    nu = [k for k in sharded if k.startswith("spec:opt_state") and k.endswith(f"nu.{w}")]
    assert mu and nu and str(sharded[mu[0]]) == str(sharded[nu[0]]) == spec(f"params.{w}")


def test_restore_onto_another_mesh_and_safetensors(sharded):
    """The 2x4-mesh checkpoint restores onto this process's single device, bit for bit."""
    out = sharded["out"]
    trainer = Trainer(tiny_task(), tiny_train_config(out), devices=jax.devices()[:1])
    state, meta = trainer.ckpt.restore(trainer.abstract_state)
    assert meta["step"] == 3 and meta["data_position"] == 3 and int(state["step"]) == 3
    for name, x in flatten(state["params"]).items():
        assert x.sharding.num_devices == 1
        np.testing.assert_array_equal(np.asarray(x), sharded[f"param:{name}"], err_msg=name)
    path = os.path.join(out, "model.safetensors")
    model = load_safetensors(tiny_task().init_model(jax.random.PRNGKey(1)), path)
    for name, x in flatten(eqx.filter(model, eqx.is_array)).items():
        np.testing.assert_array_equal(np.asarray(x), sharded[f"param:{name}"], err_msg=name)
    assert '"n_embd": 64' in read_safetensors_metadata(path)["config"]
