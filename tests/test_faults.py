"""Fault injection: a training process killed with SIGKILL at random moments (one of them
while a checkpoint is being written) or stopped with SIGTERM, resumed each time, ends with
the same weights, bit for bit, as an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.test_data import make_image_folder

# The training CLI, optionally with checkpoint writes slowed down (the write to the temp file
# finishes, then sleeps before the rename) so a kill can land inside one.
RUNNER = """
import os, sys, time
if os.environ.get("SLOW_SAVE"):
    import mixer_lib.provenance as p
    real = p.torch.save
    def slow(obj, f, *a, **kw):
        real(obj, f, *a, **kw)
        time.sleep(float(os.environ["SLOW_SAVE"]))
    p.torch.save = slow
from mixer_lib.train import main
sys.exit(main(sys.argv[1:]))
"""
STEPS = 24


def argv(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", RUNNER, "--out", str(out), "--dataset", f"imagefolder:{data}",
            "--variant", "Mixer-T/4", "--img-size", "16", "--recipe", "scratch", "--steps",
            str(STEPS), "--batch-size", "8", "--accum-steps", "2", "--checkpoint-every", "3",
            "--eval-every", "8", "--log-every", "1", "--num-workers", "0", "--seed", "5",
            "--drop-rate", "0.1", "--mixup-alpha", "0.2", "--no-progress"]


def logged_step(out: Path) -> int:
    # Read while the run may be replacing the file (a resume truncates it by rename) or
    # removing it (a resume with no checkpoint to continue from starts its metrics afresh).
    try:
        text = (out / "metrics.jsonl").read_text()
    except FileNotFoundError:
        return 0
    steps = []
    for line in text.splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass
    return max(steps, default=0)


def start(data: Path, out: Path, resume: bool, slow_save: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if slow_save:
        env["SLOW_SAVE"] = str(slow_save)
    cmd = argv(data, out) + (["--resume"] if resume else [])
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Poll until ``predicate()``; False when the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise TimeoutError("the training process made no progress")


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_sigkill_at_random_moments_and_during_a_checkpoint_write(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=8)
    reference = start(data, tmp_path / "reference", resume=False)
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    rng = random.Random(2026)
    out = tmp_path / "killed"
    kills, resumed = [], False
    # 1) during a checkpoint write: its temp file exists and the rename has not happened (the
    # write sleeps 60 s before its rename, so the kill lands inside it however slow the
    # machine; the temp file still there afterwards shows it did)
    proc = start(data, out, resume=False, slow_save=60)
    assert wait_for(lambda: any(out.glob("*.pt.tmp")), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any(out.glob("*.pt.tmp")), "the kill did not land inside the checkpoint write"
    kills.append(("during checkpoint write", logged_step(out)))
    # 2) at random updates, with a random delay inside the update
    for _ in range(3):
        target = min(STEPS - 1, logged_step(out) + rng.randint(1, 6))
        proc = start(data, out, resume=True)
        resumed = True
        if not wait_for(lambda t=target: logged_step(out) >= t, proc):
            break
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append((f"after update {target}", logged_step(out)))
    proc = start(data, out, resume=True)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert resumed and len(kills) >= 3, kills
    assert_same(final_weights(tmp_path / "reference"), final_weights(out))
    ref = json.loads((tmp_path / "reference" / "results.json").read_text())
    got = json.loads((out / "results.json").read_text())
    assert ref["top1"] == got["top1"] and ref["eval_loss"] == got["eval_loss"]


def test_sigterm_writes_a_checkpoint_and_resume_is_bit_identical(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=8)
    reference = start(data, tmp_path / "reference", resume=False)
    out = tmp_path / "stopped"
    proc = start(data, out, resume=False)
    assert wait_for(lambda: logged_step(out) >= 5, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    err = proc.stderr.read()
    assert "stopped by SIGTERM after update" in err and "--resume" in err
    stopped_at = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    # the checkpoint is of the update the signal stopped, not the last periodic one
    assert 5 <= stopped_at < STEPS and stopped_at == logged_step(out)
    assert reference.wait(timeout=300) == 0
    proc = start(data, out, resume=True)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert json.loads((out / "results.json").read_text())["resumed_from"] == stopped_at
    assert_same(final_weights(tmp_path / "reference"), final_weights(out))
