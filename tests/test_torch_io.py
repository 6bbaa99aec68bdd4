"""PyTorch checkpoints that pickle coqui's config objects load with weights_only=True, coqui absent.

XTTS-v2's released model.pth holds an ``XttsConfig`` (torch reports "Unsupported global: GLOBAL
TTS.tts.configs.xtts_config.XttsConfig" for a plain weights-only load). Here fake coqui modules
exist only while the checkpoint is saved, so loading meets the classes as it would on a machine
without coqui.
"""

from __future__ import annotations

import dataclasses
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xtts_jax.convert.torch_io import StandIn, torch_load  # noqa: E402
from xtts_jax.errors import UserError  # noqa: E402


def _fake_module(name: str, **classes) -> types.ModuleType:
    module = types.ModuleType(name)
    for cls_name, cls in classes.items():
        cls.__module__, cls.__qualname__, cls.__name__ = name, cls_name, cls_name
        setattr(module, cls_name, cls)
    return module


def _save_with_classes(path, modules: dict, payload_of) -> None:
    """torch.save ``payload_of(modules)`` while the fake modules are importable, then remove them."""
    parents = {".".join(n.split(".")[:i]) for n in modules for i in range(1, n.count(".") + 1)}
    added = {**{p: types.ModuleType(p) for p in parents if p not in sys.modules}, **modules}
    sys.modules.update(added)
    try:
        torch.save(payload_of(modules), path)
    finally:
        for name in added:
            del sys.modules[name]


def test_coqui_config_objects_become_stand_ins(tmp_path):
    @dataclasses.dataclass
    class XttsArgs:
        gpt_layers: int = 30
        gpt_number_text_tokens: int = 6681

    @dataclasses.dataclass
    class XttsConfig:
        model_args: object = None
        temperature: float = 0.75
        languages: list = dataclasses.field(default_factory=lambda: ["en", "es"])

    @dataclasses.dataclass
    class CharactersConfig:  # not among the known classes: found through torch's error, then stood in for
        pad: str = "<PAD>"

    modules = {"TTS.tts.configs.xtts_config": _fake_module("TTS.tts.configs.xtts_config", XttsConfig=XttsConfig),
               "TTS.tts.models.xtts": _fake_module("TTS.tts.models.xtts", XttsArgs=XttsArgs),
               "TTS.tts.configs.shared_configs": _fake_module("TTS.tts.configs.shared_configs",
                                                              CharactersConfig=CharactersConfig)}
    weight = torch.randn(3, 4)
    path = tmp_path / "model.pth"
    _save_with_classes(path, modules, lambda m: {
        "model": {"gpt.text_embedding.weight": weight},
        "config": XttsConfig(model_args=XttsArgs(), temperature=0.7), "characters": CharactersConfig()})
    assert "TTS.tts.configs.xtts_config" not in sys.modules
    with pytest.raises(Exception, match="Unsupported global"):  # what a plain weights-only load does
        torch.load(path, weights_only=True)

    obj = torch_load(path)
    np.testing.assert_array_equal(obj["model"]["gpt.text_embedding.weight"].numpy(), weight.numpy())
    config = obj["config"]
    assert isinstance(config, StandIn) and type(config).__qualname__ == "XttsConfig"
    assert config.temperature == 0.7 and config.languages == ["en", "es"]
    assert config.model_args.gpt_number_text_tokens == 6681 and obj["characters"].pad == "<PAD>"


def test_classes_outside_coqui_are_still_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    modules = {"evil.payload": _fake_module("evil.payload", Payload=Payload)}
    path = tmp_path / "bad.pth"
    _save_with_classes(path, modules, lambda m: {"model": {}, "extra": Payload()})
    with pytest.raises(UserError, match="cannot read .*weights_only") as e:
        torch_load(path)
    assert "\n" not in str(e.value)


def test_without_torch_the_error_names_the_convert_extra(tmp_path, monkeypatch, capsys):
    """``pip install -e .`` brings no torch: converting says in one line which extra brings it."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "torch==2.13.0" in extras["convert"]
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(UserError, match=r"\.\[convert\]") as err:
        torch_load(tmp_path / "model.pth")
    assert "\n" not in str(err.value) and "download.pytorch.org/whl/cpu" in str(err.value)
    (tmp_path / "model.pth").write_bytes(b"any")
    from _scripts import load_script

    convert = load_script("convert_xtts_cli", "tools/convert_xtts.py")
    with pytest.raises(SystemExit) as exit_info:
        convert.main(["--checkpoint", str(tmp_path / "model.pth"), "-o", str(tmp_path / "gpt.safetensors")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and ".[convert]" in lines[0], lines
