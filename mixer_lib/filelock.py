"""An exclusive lock on a file, held across processes (POSIX ``fcntl`` record locks).

Used where several processes may fetch the same thing into one cache at once: torchrun's ranks
on one node, or two separate runs sharing ``$MIXER_CACHE_DIR`` or a data root. ``lockf``
(``fcntl`` record locks) also works on NFSv4 shares, where ``flock`` may not.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(path: str | os.PathLike, what: str = "", poll_s: float = 0.2) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block; yields
    True, or False where the file system cannot lock (the caller must then keep its writes
    apart, e.g. in a temporary file of its own).

    Waits while another process holds it, saying once on stderr what it waits for. A lock
    dies with its process, so a killed holder leaves none behind. The lock file stays
    (removing it would race with a process about to lock it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    locked = False
    try:
        told = False
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except OSError as err:
                if err.errno not in (errno.EACCES, errno.EAGAIN):  # no locks here (ENOLCK)
                    print(f"cannot lock {path} ({err}); going on without the lock",
                          file=sys.stderr, flush=True)
                    break
                if not told:
                    print(f"waiting for another process {what or 'holding ' + str(path)}",
                          file=sys.stderr, flush=True)
                    told = True
                time.sleep(poll_s)
        yield locked
    finally:
        try:
            if locked:
                fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
