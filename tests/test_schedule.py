"""The scheduler behind ``study run --jobs``: order, needs, failures, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mixer_lib.schedule import Job, run_jobs


def stamp_job(tmp: Path, name: str, needs=(), sleep=0.0, status=0, meet: str = "") -> Job:
    """A job that records when it started and ended (and whether its needs had ended).
    ``meet``: it marks its own start, then waits (up to 60 s) for the job of that name to
    have started too, and records whether it saw it while running."""
    code = textwrap.dedent(f"""
        import json, sys, time, pathlib
        t0 = time.time()
        tmp = pathlib.Path({str(tmp)!r})
        needs_done = all((tmp / (n + '.json')).exists() for n in {list(needs)!r})
        (tmp / ({name!r} + '.started')).touch()
        met = None
        if {meet!r}:
            while not (met := (tmp / ({meet!r} + '.started')).exists()) and time.time() < t0 + 60:
                time.sleep(0.05)
        time.sleep({sleep})
        if {status}:
            print('broken on purpose'); sys.exit({status})
        (tmp / ({name!r} + '.json')).write_text(json.dumps(
            dict(start=t0, end=time.time(), needs_done=needs_done, met=met)))
    """)
    return Job(name, [sys.executable, "-c", code], tmp / "logs" / f"{name}.log", tuple(needs))


def read(tmp: Path, name: str) -> dict:
    return json.loads((tmp / f"{name}.json").read_text())


def test_needs_run_first_and_independent_jobs_run_side_by_side(tmp_path):
    jobs = [stamp_job(tmp_path, "up", meet="side"), stamp_job(tmp_path, "side", meet="up"),
            stamp_job(tmp_path, "down", needs=("up",)),
            stamp_job(tmp_path, "outside", needs=("not-in-this-set",))]
    lines = []
    outcomes, signum = run_jobs(jobs, parallel=2, echo=lines.append)
    assert signum is None and all(o.ok for o in outcomes.values())
    up, side, down = read(tmp_path, "up"), read(tmp_path, "side"), read(tmp_path, "down")
    assert down["needs_done"] and down["start"] >= up["end"]
    assert up["met"] and side["met"]  # each saw the other running: side by side
    assert read(tmp_path, "outside")  # a need outside the set counts as met
    assert any(line.startswith("finished down") for line in lines)


def test_a_failed_job_skips_what_needs_it_and_shows_its_log(tmp_path):
    jobs = [stamp_job(tmp_path, "up", status=3), stamp_job(tmp_path, "down", needs=("up",)),
            stamp_job(tmp_path, "deeper", needs=("down",)), stamp_job(tmp_path, "other")]
    lines = []
    outcomes, _ = run_jobs(jobs, parallel=1, echo=lines.append)
    assert outcomes["up"].status == 3
    assert "needs up" in outcomes["down"].skipped and "needs down" in outcomes["deeper"].skipped
    assert outcomes["other"].ok
    failure = next(line for line in lines if line.startswith("FAILED up"))
    assert "broken on purpose" in failure
    assert not (tmp_path / "down.json").exists()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="parallel must be >= 1"):
        run_jobs([], parallel=0)
    job = Job("a", ["true"], Path("/tmp/a.log"))
    with pytest.raises(ValueError, match="repeat"):
        run_jobs([job, job], parallel=1)


def test_sigterm_is_passed_on_and_nothing_new_starts(tmp_path):
    """The scheduler in its own process: SIGTERM reaches the running job (which writes that it
    saw it, as a training run writes its checkpoint) and the waiting job never starts."""
    child = textwrap.dedent(f"""
        import signal, sys, time, pathlib
        def stop(signum, frame):
            pathlib.Path({str(tmp_path)!r}, 'stopped').write_text(str(signum)); sys.exit(143)
        signal.signal(signal.SIGTERM, stop)
        pathlib.Path({str(tmp_path)!r}, 'running').write_text('')
        time.sleep(60)
    """)
    driver = textwrap.dedent(f"""
        import sys, json
        from pathlib import Path
        from mixer_lib.schedule import Job, run_jobs
        tmp = Path({str(tmp_path)!r})
        later = {f"open({str(tmp_path / 'later')!r}, 'w')"!r}
        jobs = [Job('long', [sys.executable, '-c', {child!r}], tmp / 'long.log'),
                Job('later', [sys.executable, '-c', later], tmp / 'later.log', ('long',))]
        outcomes, signum = run_jobs(jobs, parallel=1)
        print(json.dumps(dict(signum=signum, long=outcomes['long'].status,
                              later=outcomes['later'].skipped)))
    """)
    proc = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    deadline = time.time() + 30
    while not (tmp_path / "running").exists():
        assert time.time() < deadline and proc.poll() is None, "the job never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["signum"] == signal.SIGTERM
    assert result["long"] == 143 and (tmp_path / "stopped").read_text() == str(signal.SIGTERM)
    assert result["later"] and not (tmp_path / "later").exists()
