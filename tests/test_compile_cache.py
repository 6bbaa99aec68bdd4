"""The tools' persistent compilation cache: a second process loads what the first compiled and
speaks exactly the same audio; XTTS_JAX_CACHE=off writes nothing."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = "It was a sunny day."


def _speak(tmp_path, cache, out):
    env = {**os.environ, "XTTS_JAX_CACHE": str(cache), "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(ROOT / "tools/synthesize.py"), "--text", TEXT, "--speaker", "flite_slt",
                           "-o", str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def test_second_process_reads_the_cache_and_speaks_the_same(tmp_path):
    cache = tmp_path / "cache"
    first = _speak(tmp_path, cache, tmp_path / "a.wav")
    entries = sorted(p.name for p in cache.iterdir())
    assert entries, "nothing was cached"
    second = _speak(tmp_path, cache, tmp_path / "b.wav")
    assert second == first
    after = {p.name for p in cache.iterdir()}
    # every program the first process stored has the same key in the second, so it was loaded, not
    # compiled anew; the tools store every program, however small, so the second stores nothing new
    # for the sampler or the DVAE decoder, the programs the cache is for
    program = lambda name: name.rsplit("-", 2)[0]  # noqa: E731  ("jit_<name>-<hash>-cache")
    heavy = {"jit_generate_padded", "jit__dvae_mel"}
    assert heavy <= {program(n) for n in entries}
    assert set(entries) <= after and not heavy & {program(n) for n in after - set(entries)}, sorted(after)


def test_off_writes_nothing_and_the_default_is_under_home(tmp_path):
    _speak(tmp_path, "off", tmp_path / "a.wav")
    assert not (tmp_path / ".cache").exists()
    _speak(tmp_path, "", tmp_path / "b.wav")  # unset: ~/.cache/xtts_jax/jax
    assert any((tmp_path / ".cache" / "xtts_jax" / "jax").iterdir())
