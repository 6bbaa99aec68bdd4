"""Test-wide settings. The tools' persistent compilation cache stays off inside the test process
(tools run in-process must not write to the user's home); tests/test_compile_cache.py turns it on
in its own subprocesses."""

import os

os.environ.setdefault("XTTS_JAX_CACHE", "off")
