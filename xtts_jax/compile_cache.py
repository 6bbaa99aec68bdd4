"""JAX's persistent compilation cache for the command-line tools.

A tool process compiles the same programs every time it starts (the sampler's loop, the DVAE
decoder, the conditioning encoder): seconds on a CPU. With the cache on disk, a second process
loads them instead. The folder is ``$XTTS_JAX_CACHE``, else ``~/.cache/xtts_jax/jax``;
``XTTS_JAX_CACHE=off`` turns it off. Programs that compile in under ``min_seconds`` are not stored;
the tools store every one: a synthesis also compiles some eighty small programs (array ops outside
the big jits) at about 0.06 s each, and loading them instead took a cold process with a filled
cache from 11.1 s to 7.4 s on the 2-core CPU (``bench/bench_synthesize.py``, 2026-12-07).
"""

from __future__ import annotations

import os
from pathlib import Path


def enable(min_seconds: float = 0.0) -> Path | None:
    """Point JAX at the cache folder (made if missing); the folder, or None when turned off or unwritable."""
    import jax

    setting = os.environ.get("XTTS_JAX_CACHE", "")
    if setting.lower() in ("off", "0", "none"):
        return None
    folder = Path(setting or Path.home() / ".cache" / "xtts_jax" / "jax").expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_seconds)
    return folder
