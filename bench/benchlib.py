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


def interleaved(fns: dict, rounds: int) -> tuple[dict, tuple[float, float]]:
    """Run every ``fns`` value once to warm up (compile, fault pages in), then ``rounds`` rounds
    that time each in turn, so a change in the machine's load hits every variant alike. Returns
    ``({key: [seconds per round]}, (1-minute load before, after))``."""
    import os

    for fn in fns.values():
        fn()
    times: dict = {key: [] for key in fns}
    before = os.getloadavg()[0]
    for _ in range(rounds):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return times, (before, os.getloadavg()[0])
