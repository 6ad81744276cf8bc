"""Wall-clock timing for the benchmarks: the median of repeated calls after a warm-up, and
rates over windows of consecutive calls (as a training loop logs them)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Median seconds of one call of ``fn`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def window_rates(fn: Callable[[], object], window: int, windows: int,
                 warmup: int = 3) -> list[float]:
    """Calls per second of ``fn`` over ``windows`` runs of ``window`` consecutive calls each
    (after ``warmup`` calls): a rate measured the way a training loop logs its own, every slow
    call included, so the two compare like with like (a median of single calls leaves the slow
    ones out)."""
    for _ in range(warmup):
        fn()
    rates = []
    for _ in range(windows):
        t = time.perf_counter()
        for _ in range(window):
            fn()
        rates.append(window / (time.perf_counter() - t))
    return rates
