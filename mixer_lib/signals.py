"""Stopping a run cleanly: SIGTERM and SIGINT noted, acted on between updates; a child
process that ends with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import Any


class StopSignals:
    """While active, SIGTERM and SIGINT only set :attr:`signum`; the loop checks it after each
    update, writes a checkpoint and stops. Outside the main thread it does nothing."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = self.signum or signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def run_child(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``cmd`` in a child process, its output captured as text, that ends with this one:
    where this process gets SIGTERM (a time limit's) while it waits, it kills the child
    first and then ends as SIGTERM would have ended it, so no orphan goes on using the
    device after the limit. After ``timeout`` seconds the child is killed and its status
    is non-zero, with a last line of stderr that says so."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def end(signum: int, frame: object) -> None:
        proc.kill()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, end) if main else None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\nkilled after {timeout:g} s (its time limit)\n"
    finally:
        if main:
            signal.signal(signal.SIGTERM, old)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
