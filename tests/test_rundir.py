"""Run folders: never lose a run. Identity, refusal, move-aside, lock, checkpoints, signals."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import mixer_lib.train as train_mod
from mixer_lib.rundir import (
    CheckpointError,
    RunExists,
    RunLock,
    RunLocked,
    load_checkpoint,
    save_checkpoint,
)
from mixer_lib.train import RunInterrupted, main, run_or_resume, train
from tests.test_data import make_image_folder
from tests.test_train import tiny_run


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_experiment_from_another_checkout_path_is_reused(tmp_path, monkeypatch):
    data = tmp_path / "data"
    make_image_folder(data / "cifar10-jpeg", per_class=4)
    other_path = tmp_path / "moved-checkout-data"
    other_path.symlink_to(data)  # the same files through another path
    cfg = tiny_run(data, dataset="cifar10-jpeg", steps=2, data_root=str(data), num_workers=0)
    first = run_or_resume(cfg, tmp_path / "run", progress=False)
    before = tree_digest(tmp_path / "run")

    def no_training(*a, **kw):
        raise AssertionError("the finished run must be reused, not retrained")

    monkeypatch.setattr(train_mod, "train", no_training)
    moved = tiny_run(other_path, dataset="cifar10-jpeg", steps=2, data_root=str(other_path),
                     num_workers=1, eval_every=1)
    again = run_or_resume(moved, tmp_path / "run", progress=False)
    assert again["top1"] == first["top1"]
    assert tree_digest(tmp_path / "run") == before


def test_an_unfinished_run_is_resumed_under_other_execution_settings(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=4)
    cfg = tiny_run(data, steps=4, num_workers=0)
    train(cfg, tmp_path / "run", stop_after=2, progress=False)
    # (no worker processes here: forking after the Flax tests started JAX threads can hang)
    result = run_or_resume(tiny_run(data, steps=4, num_workers=0, log_every=2, eval_every=4,
                                    checkpoint_every=1, compile=False), tmp_path / "run",
                           progress=False)
    assert result["resumed_from"] == 2 and result["steps"] == 4


def test_a_different_experiment_is_refused_and_the_old_run_left_intact(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=4)
    run = tmp_path / "run"
    run_or_resume(tiny_run(data, steps=2), run, progress=False)
    before = tree_digest(run)
    with pytest.raises(RunExists) as err:
        run_or_resume(tiny_run(data, steps=2, lr=0.5, seed=4), run, progress=False)
    text = str(err.value)
    assert "differs in lr, seed" in text and "lr: 0.001 -> 0.5" in text
    assert "another output folder" in text and "overwrite=True" in text
    with pytest.raises(RunExists, match="differs in lr"):
        train(tiny_run(data, steps=2, lr=0.5), run, resume=True, progress=False)
    assert tree_digest(run) == before


def test_overwrite_moves_the_old_run_aside(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=4)
    run = tmp_path / "run"
    run_or_resume(tiny_run(data, steps=2), run, progress=False)
    before = tree_digest(run)
    result = run_or_resume(tiny_run(data, steps=2, lr=0.5), run, progress=False,
                           overwrite=True)
    assert result["config"]["lr"] == 0.5
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and tree_digest(aside[0]) == before


def test_cli_refuses_to_overwrite_and_moves_aside_when_asked(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", per_class=4)
    argv = ["--out", str(tmp_path / "run"), "--dataset", f"imagefolder:{data}", "--variant",
            "Mixer-T/4", "--img-size", "16", "--steps", "2", "--batch-size", "8",
            "--num-workers", "0", "--no-progress"]
    assert main(argv) == 0
    before = tree_digest(tmp_path / "run")
    assert main(argv) == 2
    assert "already holds this run; pass resume=True (--resume)" in capsys.readouterr().err
    assert main([*argv, "--lr", "0.1"]) == 2
    assert "differs in lr" in capsys.readouterr().err
    assert tree_digest(tmp_path / "run") == before
    assert main([*argv, "--lr", "0.1", "--overwrite"]) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert tree_digest(aside[0]) == before


def test_one_writer_per_run_folder(tmp_path):
    code = ("import sys, time; from pathlib import Path; from mixer_lib.rundir import RunLock;"
            "lock = RunLock(Path(sys.argv[1])).__enter__(); print('locked', flush=True);"
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=rf"being written by another process \(pid "
                                            rf"{holder.pid} on"):
            RunLock(tmp_path).__enter__()
    finally:
        holder.kill()
        holder.wait()
    # the killed holder's lock file is still there, with its pid: stale, taken over
    assert f"pid {holder.pid}" in (tmp_path / "run.lock").read_text()
    with RunLock(tmp_path) as lock:
        assert lock.took_over.startswith(f"pid {holder.pid}")
        assert f"pid {os.getpid()}" in (tmp_path / "run.lock").read_text()


def test_a_second_training_process_on_the_same_folder_is_refused(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=4)
    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run), pytest.raises(RunLocked, match="being written by another process"):
        train(tiny_run(data, steps=2), run, progress=False)


def test_previous_checkpoint_is_kept_and_a_damaged_one_is_named(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=4)
    cfg = tiny_run(data, steps=6, checkpoint_every=2)
    full = train(cfg, tmp_path / "full", progress=False)
    run = tmp_path / "run"
    train(cfg, run, stop_after=4, progress=False)
    assert torch.load(run / "checkpoint.prev.pt", weights_only=True)["step"] == 2
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 4
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"checkpoint.pt cannot be read .*previous good "
                                              r"checkpoint .*checkpoint.prev.pt \(update 2\) "
                                              r"is kept.*--from-previous"):
        train(cfg, run, resume=True, progress=False)
    resumed = train(cfg, run, resume=True, from_previous=True, progress=False)
    assert resumed["resumed_from"] == 2 and resumed["top1"] == full["top1"]
    assert len(list(run.glob("checkpoint.damaged-*.pt"))) == 1  # moved aside, not deleted
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_killed_between_the_renames_resumes_from_previous(tmp_path):
    save_checkpoint(tmp_path, {"model": {}, "optimizer": {}, "step": 1})
    save_checkpoint(tmp_path, {"model": {}, "optimizer": {}, "step": 2})
    os.remove(tmp_path / "checkpoint.pt")
    assert load_checkpoint(tmp_path)["step"] == 1


def test_checkpoints_load_with_weights_only(tmp_path):
    save_checkpoint(tmp_path, {"model": {}, "optimizer": {}, "step": 1,
                               "evil": threading.Lock})
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path)


def test_sigterm_in_process_checkpoints_and_resumes_bit_identically(tmp_path, monkeypatch):
    data = make_image_folder(tmp_path / "data", per_class=8)
    cfg = tiny_run(data, steps=6, checkpoint_every=100)
    train(cfg, tmp_path / "full", progress=False)
    real_update = train_mod.update
    calls = {"n": 0}

    def update_then_signal(*a, **kw):
        calls["n"] += 1
        out = real_update(*a, **kw)
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGTERM)  # arrives mid-run, as from a scheduler
        return out

    monkeypatch.setattr(train_mod, "update", update_then_signal)
    with pytest.raises(RunInterrupted, match="stopped by SIGTERM after update 3"):
        train(cfg, tmp_path / "run", progress=False)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    monkeypatch.setattr(train_mod, "update", real_update)
    train(cfg, tmp_path / "run", resume=True, progress=False)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_move_aside_under_a_label_keeps_the_extension_and_never_overwrites(tmp_path):
    from mixer_lib.rundir import move_aside

    record = tmp_path / "benchmark-perf-cpu-cpu.json"
    assert move_aside(record, "4eb6ba1") is None  # nothing there
    for text in ("first", "second"):
        record.write_text(text)
        move_aside(record, "4eb6ba1")
    assert not record.exists()
    assert (tmp_path / "benchmark-perf-cpu-cpu-4eb6ba1.json").read_text() == "first"
    assert (tmp_path / "benchmark-perf-cpu-cpu-4eb6ba1-2.json").read_text() == "second"
