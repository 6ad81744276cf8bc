"""mixer_lib.timing: the benchmarks' timers and their one guarded measurement."""

from __future__ import annotations

import pytest

from mixer_lib.timing import attempt, exit_if_failed, median_seconds, window_rates


def test_attempt_returns_the_value_or_records_the_failure_and_goes_on(capsys):
    failures: list[dict] = []
    assert attempt("fine", lambda: 3, failures) == 3 and failures == []

    def oom() -> None:
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    assert attempt("batch 512", oom, failures) is None
    assert failures == [{"what": "batch 512", "error": "RuntimeError: CUDA out of memory."}]
    err = capsys.readouterr().err
    assert "Traceback" in err and "batch 512: failed" in err


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_attempt_lets_an_interrupt_end_the_run(stop):
    def interrupted() -> None:
        raise stop()

    failures: list[dict] = []
    with pytest.raises(stop):
        attempt("cut", interrupted, failures)
    assert failures == []


def test_a_run_with_failures_ends_naming_them():
    exit_if_failed([], "of 3 measurements")  # nothing failed: the run ends as it would
    failures = [{"what": "a", "error": "E: x"}, {"what": "b", "error": "E: y"}]
    with pytest.raises(SystemExit, match=r"^2 of 3 measurements failed \(the record lists "
                                         r"them under 'failed'\): a; b$"):
        exit_if_failed(failures, "of 3 measurements")


def test_timers_call_the_function_as_often_as_asked():
    calls = []
    assert median_seconds(lambda: calls.append(1), repeats=5, warmup=2) >= 0
    assert len(calls) == 7
    rates = window_rates(lambda: calls.append(1), window=3, windows=2, warmup=1)
    assert len(rates) == 2 and all(r > 0 for r in rates) and len(calls) == 7 + 1 + 6
