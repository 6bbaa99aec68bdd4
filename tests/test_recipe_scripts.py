"""The shell recipes stay in step with the tools they call: valid bash, and every option a recipe
passes to one of our Python scripts is an option that script's parser knows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.sh"))
SCRIPT = re.compile(r"\$PY\s+((?:recipes|tools)/\w+\.py)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9.-]*)")


def calls(text: str) -> dict[str, set[str]]:
    """``{script: flags}`` over the logical lines of a shell script, following shell functions
    that wrap a script (``name() { ... $PY script ...; }`` then ``name ARGS``) and bash arrays of
    options (``NAME=(--a 1)``, ``NAME+=(--b)``, then ``"${NAME[@]}"`` in a call)."""
    lines = re.sub(r"\\\n", " ", text).splitlines()
    wrappers: dict[str, str] = {}
    arrays: dict[str, set[str]] = {}
    found: dict[str, set[str]] = {}
    for line in lines:
        code = re.split(r"(?:^|\s)#", line, maxsplit=1)[0]  # a comment starts at a word
        for name, body in re.findall(r"(\w+)\+?=\(([^)]*)\)", code):
            arrays.setdefault(name, set()).update(FLAG.findall(body))
        script = SCRIPT.search(code)
        define = re.match(r"\s*(\w+)\(\)\s*\{", code)
        if define and script:
            wrappers[define.group(1)] = script.group(1)
        if not script:
            first = code.split()[0] if code.split() else ""
            if first not in wrappers:
                continue
            name = wrappers[first]
        else:
            name = script.group(1)
        found.setdefault(name, set()).update(FLAG.findall(code[script.end():] if script else code))
        for array in re.findall(r"\$\{(\w+)\[@\]\}", code):
            found[name].update(arrays.get(array, ()))
    return found


def test_calls_reads_wrappers_and_continuations():
    text = ('enc() { [ -f x ] || $PY tools/a.py --dvae "$D" --out "$2"; }\n'
            'enc data --per-speaker 20\n'
            'OPT=(--init x); OPT+=(--seed 1)\n'
            '$PY recipes/b.py "${OPT[@]}" --steps 3 \\\n    --lr 1e-3  # --not-this\n')
    assert calls(text) == {"tools/a.py": {"--dvae", "--out", "--per-speaker"},
                           "recipes/b.py": {"--init", "--seed", "--steps", "--lr"}}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_is_valid_bash_and_its_options_exist(recipe):
    subprocess.run(["bash", "-n", str(recipe)], check=True)
    for script, flags in calls(recipe.read_text()).items():
        assert (ROOT / script).is_file(), f"{recipe.name} calls {script}, which does not exist"
        helptext = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=ROOT, capture_output=True,
                                  text=True, timeout=300).stdout
        unknown = sorted(f for f in flags if not re.search(re.escape(f) + r"(?![\w-])", helptext))
        assert not unknown, f"{recipe.name} passes {unknown} to {script}, whose --help does not list them"
