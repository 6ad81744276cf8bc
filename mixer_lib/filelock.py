"""An exclusive lock on a file, held across processes (POSIX ``fcntl`` record locks).

Used where several processes may fetch the same thing into one cache at once: torchrun's ranks
on one node, or two separate runs sharing ``$MIXER_CACHE_DIR`` or a data root. ``lockf``
(``fcntl`` record locks) also works on NFSv4 shares, where ``flock`` may not.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(path: str | os.PathLike, what: str = "", poll_s: float = 0.2) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    Waits while another process holds it, saying once on stderr what it waits for. The lock
    file stays (removing it would race with a process about to lock it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        told = False
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if not told:
                    print(f"waiting for another process {what or 'holding ' + str(path)}",
                          file=sys.stderr, flush=True)
                    told = True
                time.sleep(poll_s)
        yield
    finally:
        try:
            fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
