"""xtts_jax/weights.py: one reader of weights files whose every refusal is one sentence naming the path,
used by every loader; and the layering it exists for (models and converters never import the trainer)."""

import ast
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from xtts_jax import weights
from xtts_jax.errors import UserError

PACKAGE = Path(__file__).resolve().parents[1] / "xtts_jax"


def bad_files(tmp_path) -> dict[str, tuple[Path, str]]:
    """Files that are not weights, each with the words its refusal must hold."""
    good = tmp_path / "good.safetensors"
    save_file({"w": np.ones((64, 64), np.float32)}, str(good), metadata={"note": "no config here"})
    data = good.read_bytes()
    (tmp_path / "folder.safetensors").mkdir()
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "random.safetensors").write_bytes(np.random.default_rng(0).bytes(1000))
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.safetensors").write_text("hello, I am a text file\n")
    return {"missing": (tmp_path / "none.safetensors", "does not exist"),
            "folder": (tmp_path / "folder.safetensors", "is a directory, not a file"),
            "empty": (tmp_path / "empty.safetensors", "not a safetensors file (it is empty)"),
            "random bytes": (tmp_path / "random.safetensors", "not a safetensors file"),
            "truncated": (tmp_path / "cut.safetensors", "not a safetensors file"),
            "text": (tmp_path / "text.safetensors", "not a safetensors file"),
            "no config": (good, "holds no")}


def loaders():
    from xtts_jax.convert.speaker_encoder import load_speaker_encoder
    from xtts_jax.models.dvae import load_dvae
    from xtts_jax.models.tts import load_tts
    from xtts_jax.train.lm import load_lm

    return {"tts": load_tts, "dvae": load_dvae, "speaker encoder": load_speaker_encoder, "lm": load_lm}


@pytest.mark.parametrize("loader", ["tts", "dvae", "speaker encoder", "lm"])
def test_every_loader_refuses_a_bad_file_in_one_sentence_naming_it(tmp_path, loader):
    load = loaders()[loader]
    for case, (path, words) in bad_files(tmp_path).items():
        if case == "folder" and loader == "lm":
            continue  # a run folder is a valid --checkpoint there: its model.safetensors is read
        with pytest.raises(UserError) as e:
            load(path)
        message = str(e.value)
        assert str(path) in message and words in message and "\n" not in message, (case, message)


def test_safetensors_readers_refuse_bad_files(tmp_path):
    for case, (path, words) in bad_files(tmp_path).items():
        if case == "no config":
            continue
        for read in (weights.read_safetensors, weights.read_safetensors_metadata):
            with pytest.raises(UserError) as e:
                read(path, "GPT-2 weights")
            assert str(e.value).startswith(f"GPT-2 weights {path} ") and words in str(e.value), case


def test_a_file_lacking_a_tensor_or_with_another_shape_is_named(tmp_path):
    model = eqx.nn.Linear(3, 2, key=jax.random.key(0))
    path = tmp_path / "lin.safetensors"
    weights.export_safetensors(model, path, {"cfg": {"in": 3}})
    loaded = weights.load_safetensors(eqx.filter_eval_shape(lambda: model), path)
    np.testing.assert_array_equal(loaded.weight, model.weight)
    np.testing.assert_array_equal(loaded.bias, model.bias)
    assert weights.read_model_config(path, "cfg", "linear") == {"in": 3}
    save_file({"weight": np.zeros((2, 3), np.float32)}, str(path))
    with pytest.raises(UserError, match=r"lin.safetensors does not fit this model: bias needs shape \(2,\), "
                                        "the file has no such tensor"):
        weights.load_safetensors(model, path)
    save_file({"weight": np.zeros((2, 4), np.float32), "bias": np.zeros(2, np.float32)}, str(path))
    with pytest.raises(UserError, match=r"weight needs shape \(2, 3\), the file has \(2, 4\)"):
        weights.load_safetensors(model, path)
    save_file({"weight": np.zeros((2, 3), np.float32)}, str(path), metadata={"cfg": "{not json"})
    with pytest.raises(UserError, match="unreadable linear config"):
        weights.read_model_config(path, "cfg", "linear")


def test_pytorch_checkpoint_folder_is_named_a_folder(tmp_path):
    from xtts_jax.convert.torch_io import torch_load

    (tmp_path / "model.pth").mkdir()
    with pytest.raises(UserError, match="model.pth is a directory, not a file"):
        torch_load(tmp_path / "model.pth")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_weights_io_sits_below_models_and_converters():
    """STYLE.md's layering: models and converters read and write weights through xtts_jax/weights.py,
    never through the trainer or the synthesis pipeline; weights.py imports nothing of ours but errors."""
    climbing = {}
    for folder in ("models", "convert", "text", "audio"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            up = {m for m in imported_modules(path) if m.startswith(("xtts_jax.train", "xtts_jax.inference"))}
            if up:
                climbing[f"{folder}/{path.name}"] = sorted(up)
    assert climbing == {}
    assert {m for m in imported_modules(PACKAGE / "weights.py") if m.startswith("xtts_jax")} == {"xtts_jax.errors"}
