"""Wall-clock timing for the benchmarks: the median of repeated calls after a warm-up, rates
over windows of consecutive calls (as a training loop logs them), and one measurement that
may fail without ending the run."""

from __future__ import annotations

import gc
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


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


def attempt(what: str, fn: Callable[[], T], failures: list[dict]) -> T | None:
    """``fn()``, or None where it raises: then ``{"what": what, "error": ...}`` is appended to
    ``failures``, the traceback goes to stderr and the GPU's cached memory is freed, so that
    one configuration a machine cannot run (out of memory, a kernel its compiler rejects)
    does not cost the measurements after it. An interrupt or the time limit's signal still
    ends the run; the caller says the run failed (its record, its exit status)."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - recorded and reported, never silent
        traceback.print_exc(file=sys.stderr)
        message = (str(err).strip().splitlines() or [""])[0][:300]
        failures.append({"what": what, "error": f"{type(err).__name__}: {message}"})
        print(f"{what}: failed ({failures[-1]['error']}); going on with the rest",
              file=sys.stderr, flush=True)
    gc.collect()  # the failed call's tensors, held by its frames until now
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return None


def exit_if_failed(failures: list[dict], counted: str) -> None:
    """End a run whose :func:`attempt` calls recorded ``failures`` with a non-zero status
    that names them; ``counted`` says what the count counts (``"of 8 measurements"``)."""
    if failures:
        raise SystemExit(f"{len(failures)} {counted} failed (the record lists them under "
                         "'failed'): " + "; ".join(f["what"] for f in failures))
