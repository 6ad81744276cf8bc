"""One table from errors to exit statuses, used by every command-line tool."""

from __future__ import annotations

import subprocess
import sys

from mixer_lib.checkpoints import CheckpointError
from mixer_lib.config import ConfigError
from mixer_lib.datasets import DataError
from mixer_lib.download import CheckpointDownloadError
from mixer_lib.errors import EXIT_STATUS, USER_ERRORS, exit_status
from mixer_lib.rundir import CheckpointError as RunCheckpointError
from mixer_lib.rundir import RunExists, RunLocked
from tests.test_data import make_image_folder


def test_every_user_error_has_one_status():
    assert exit_status(ConfigError("x")) == 2 and exit_status(RunExists("x")) == 2
    assert exit_status(RunLocked("x")) == 2 and exit_status(RunCheckpointError("x")) == 2
    assert exit_status(CheckpointError("x")) == 2  # both checkpoint errors are covered
    assert exit_status(DataError("x")) == 1 and exit_status(CheckpointDownloadError("x")) == 1
    assert len({kind for kind, _ in EXIT_STATUS}) == len(USER_ERRORS)


def test_a_weights_file_that_is_not_there_is_a_message_not_a_traceback(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=20)  # a dev slice of one image
    for tool, extra in (("mixer_lib.train", []), ("mixer_lib.protocol", ["--grid", "0.01",
                                                                          "--repeats", "1"])):
        done = subprocess.run(
            [sys.executable, "-m", tool, "--out", str(tmp_path / tool), "--dataset",
             f"imagefolder:{data}", "--variant", "Mixer-T/4", "--img-size", "16", "--steps",
             "1", "--batch-size", "4", "--num-workers", "0", "--weights",
             str(tmp_path / "missing.npz"), "--no-progress", *extra],
            capture_output=True, text=True)
        assert done.returncode == 2, (tool, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
        assert "error: " in done.stderr and "missing.npz" in done.stderr
