"""Errors a user can fix, and what every command-line tool does with them: one table.

Each tool prints ``error: <message>`` (the message says what to change) and exits with the
status below instead of showing a traceback. 2: the command or its inputs cannot work as
given (an option, a run folder, a checkpoint that does not fit); 1: something the machine
lacks (data, a download). Interrupted runs exit with 128 + the signal (in each tool).
"""

from __future__ import annotations

import sys

from mixer_lib.checkpoints import CheckpointError as WeightsError
from mixer_lib.config import ConfigError
from mixer_lib.datasets import DataError
from mixer_lib.download import CheckpointDownloadError
from mixer_lib.rundir import CheckpointError as RunCheckpointError
from mixer_lib.rundir import RunExists, RunLocked

EXIT_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (ConfigError, 2),  # an option value it cannot take
    (RunExists, 2),  # the run folder holds another run, or this one without resume
    (RunLocked, 2),  # another process writes the run folder
    (RunCheckpointError, 2),  # a run's checkpoint.pt is damaged
    (WeightsError, 2),  # a weights file (.npz, checkpoint) that does not fit the model
    (DataError, 1),  # data missing, misplaced or unreadable
    (CheckpointDownloadError, 1),  # a download that failed (offline?)
)
USER_ERRORS: tuple[type[BaseException], ...] = tuple(kind for kind, _ in EXIT_STATUS)


def exit_status(err: BaseException) -> int:
    """The status for ``err`` from :data:`EXIT_STATUS` (the first matching entry)."""
    return next(status for kind, status in EXIT_STATUS if isinstance(err, kind))


def report(err: BaseException, prefix: str = "") -> int:
    """Print ``err`` as a command-line error and return its exit status."""
    print(f"error: {prefix}{err}", file=sys.stderr)
    return exit_status(err)
