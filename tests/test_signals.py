"""mixer_lib.signals.run_child: a child process that ends with its parent and its limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from mixer_lib.signals import run_child


def test_run_child_returns_the_childs_output_and_status():
    done = run_child([sys.executable, "-c", "import sys; print('out'); "
                      "print('err', file=sys.stderr); sys.exit(3)"], timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_run_child_kills_a_child_past_its_timeout():
    start = time.monotonic()
    done = run_child([sys.executable, "-c", "import time; time.sleep(60)"], timeout=1)
    assert time.monotonic() - start < 30
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == "killed after 1 s (its time limit)"


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_parent_ended_by_sigterm_takes_its_child_with_it(tmp_path):
    """As the time limit of scripts/perf-on-gpu.sh ends a stage: the parent's SIGTERM ends
    the child too (no orphan goes on using the GPU), and the parent's status is SIGTERM's."""
    pid_file = tmp_path / "child.pid"
    child = (f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
             "time.sleep(120)")
    parent = textwrap.dedent(f"""
        import sys
        from mixer_lib.signals import run_child
        run_child([sys.executable, "-c", {child!r}], timeout=120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    deadline = time.monotonic() + 10
    while alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child_pid)
