"""What the benchmark scripts share: timing that waits for the device and excludes compilation."""

from __future__ import annotations

import statistics
import time

import jax


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up (compile) run; each run
    waits for its results (``block_until_ready``), so asynchronous dispatch is not mistaken for speed."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)
