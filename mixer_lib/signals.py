"""Stopping a run cleanly: SIGTERM and SIGINT noted, acted on between updates."""

from __future__ import annotations

import signal
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
