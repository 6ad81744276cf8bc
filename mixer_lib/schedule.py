"""Run commands side by side, each once the commands it needs have succeeded.

Used by ``python -m mixer_lib.study run --jobs N`` to fill a GPU (or a many-core CPU) with
several small training runs. Each command writes to its own log file. SIGTERM or SIGINT stops
the scheduler from starting anything new and is passed on to the running commands (a training
run then writes a checkpoint and stops); the scheduler waits for them before it returns.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    """One command: ``argv`` run with its output in ``log``, after every job in ``needs``."""

    name: str
    argv: list[str]
    log: Path
    needs: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """What became of a job: its exit status and seconds, or why it never started."""

    status: int | None = None
    seconds: float | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_jobs(jobs: list[Job], parallel: int, poll_s: float = 0.2,
             echo: Callable[[str], None] = print) -> tuple[dict[str, Outcome], int | None]:
    """Run ``jobs`` with at most ``parallel`` at a time, in list order as their needs allow.

    A need that is not among ``jobs`` counts as met (the caller checks those). A job whose need
    failed is skipped. Returns each job's :class:`Outcome` and the signal that stopped the
    scheduler (None when every job ran or was skipped)."""
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1; got {parallel}")
    by_name = {j.name: j for j in jobs}
    if len(by_name) != len(jobs):
        raise ValueError(f"job names repeat: {[j.name for j in jobs]}")
    pending = list(jobs)
    outcomes: dict[str, Outcome] = {}
    active: dict[str, tuple[subprocess.Popen, float, object]] = {}
    stopped: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if not stopped:
            stopped.append(signum)
            echo(f"stopping: {signal.Signals(signum).name} passed on to "
                 f"{len(active)} running job(s); nothing new starts")
        for proc, _, _ in active.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    old = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGINT):
            old[s] = signal.signal(s, on_signal)
    try:
        while pending or active:
            for job in list(pending):  # skip jobs whose needs failed or were skipped
                bad = [n for n in job.needs if n in outcomes and not outcomes[n].ok]
                if bad:
                    pending.remove(job)
                    outcomes[job.name] = Outcome(skipped=f"needs {', '.join(bad)}, which "
                                                         f"did not finish")
                    echo(f"skipped {job.name}: {outcomes[job.name].skipped}")
            while not stopped and len(active) < parallel:
                ready = [j for j in pending if all(
                    n not in by_name or (n in outcomes and outcomes[n].ok) for n in j.needs)]
                if not ready:
                    break
                job = ready[0]
                pending.remove(job)
                job.log.parent.mkdir(parents=True, exist_ok=True)
                log = open(job.log, "w")  # noqa: SIM115 (closed when the job ends)
                proc = subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **job.env})
                active[job.name] = (proc, time.perf_counter(), log)
                echo(f"started {job.name} (pid {proc.pid}; log {job.log})")
            if stopped and not active:
                break
            if not active:  # nothing runs and nothing can start
                for job in pending:
                    outcomes[job.name] = Outcome(skipped="its needs never finished")
                break
            time.sleep(poll_s)
            for name, (proc, t0, log) in list(active.items()):
                if proc.poll() is None:
                    continue
                del active[name]
                log.close()
                seconds = time.perf_counter() - t0
                outcomes[name] = Outcome(status=proc.returncode, seconds=seconds)
                done = sum(o.ok for o in outcomes.values())
                if proc.returncode == 0:
                    echo(f"finished {name} in {seconds:.0f} s ({done}/{len(jobs)} done)")
                elif stopped and proc.returncode in (128 + stopped[0], -stopped[0]):
                    echo(f"stopped {name} after {seconds:.0f} s: "
                         f"{_tail(by_name[name].log, 1)}")
                else:
                    echo(f"FAILED {name} (exit {proc.returncode}) after {seconds:.0f} s; "
                         f"end of {by_name[name].log}:\n{_tail(by_name[name].log)}")
        for job in pending:
            outcomes.setdefault(job.name, Outcome(skipped="stopped before it started"))
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        sys.stdout.flush()
    return outcomes, (stopped[0] if stopped else None)
