"""Load a recipe or tool (a script, not a package module) by its path in the repository."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str, rel: str):
    """Import ``ROOT/rel`` as module ``name``; registered in sys.modules, where dataclasses look their
    module up while the file runs."""
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
