"""The study's command line, record states and the wiring of ``run --jobs``."""

from __future__ import annotations

import json

import pytest
import torch

from mixer_lib import study
from mixer_lib.config import experiment


def write_record(folder, run: study.StudyRun, device: str = "NVIDIA H200", **change) -> None:
    cfg = json.loads(json.dumps(experiment(run.run_config()), default=str)) | change
    (folder / f"{run.name}.json").write_text(json.dumps({
        "config": cfg, "top1": 50.0, "num_eval": 5000, "study": {"name": run.name},
        "environment": {"device": device}}))


def test_status_tells_done_stale_and_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "RECORDS", tmp_path)
    up, ft = study.study_runs()[:2]
    write_record(tmp_path, up)
    write_record(tmp_path, ft, lr=0.5)
    assert study.status(up) == "done"
    assert study.status(ft) == "stale"
    assert study.status(study.study_runs()[5]) == "missing"
    assert set(study.load_records()) == {up.name}  # stale records are never used


def test_reference_records_accept_a_cpu_auto_run_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "REFERENCE", tmp_path)
    up = study.study_runs()[0]
    write_record(tmp_path, up, device="cpu (x86_64, 2 cores)", precision="auto")
    assert list(study.reference_records()) == [up.name]
    write_record(tmp_path, up, device="NVIDIA H200", precision="auto")  # bf16 there
    assert study.reference_records() == {}
    write_record(tmp_path, up, device="cpu (x86_64, 2 cores)", precision="auto", lr=1.0)
    assert study.reference_records() == {}


@pytest.mark.parametrize("argv, message", [
    (["run", "--jobs", "0"], "--jobs must be >= 1"),
    (["run", "--only", "e9-nothing"], "unknown study runs"),
    (["run", "--device", "gpu"], "--device gpu"),
])
def test_bad_arguments_stop_before_any_run(argv, message, capsys):
    assert study.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_missing_gpu_is_named_before_any_run(capsys):
    assert study.main(["run", "--device", "cuda", "--jobs", "4"]) == 2
    assert "torch sees no GPU" in capsys.readouterr().err


def test_parallel_runs_wait_for_their_upstream_and_share_the_cores(tmp_path, monkeypatch):
    """``--jobs``: one process per run (``run --only NAME`` with the same device, data root and
    workers), each after the runs it needs; the threads split between them."""
    monkeypatch.setattr(study, "RECORDS", tmp_path)  # nothing done: every run is to do
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = {}

    def fake_run_jobs(jobs, parallel, echo=print):
        seen["jobs"], seen["parallel"] = jobs, parallel
        from mixer_lib.schedule import Outcome

        return {j.name: Outcome(status=0, seconds=1.0) for j in jobs}, None

    monkeypatch.setattr("mixer_lib.schedule.run_jobs", fake_run_jobs)
    data = tmp_path / "data"
    assert study.main(["run", "--jobs", "3", "--num-workers", "2", "--data-root", str(data),
                       "--only", "E1"]) == 0
    jobs = {j.name: j for j in seen["jobs"]}
    assert seen["parallel"] == 3 and set(jobs) == {r.name for r in study.study_runs()
                                                   if r.experiment == "E1"}
    ft = jobs["e1-ft-mixer-s0"]
    assert ft.needs == ("e1-up-mixer",)
    argv = ft.argv
    assert argv[argv.index("--only") + 1] == "e1-ft-mixer-s0"
    assert argv[argv.index("--device") + 1] == "cpu"
    assert argv[argv.index("--data-root") + 1] == str(data.resolve())
    assert argv[argv.index("--num-workers") + 1] == "2"
    # each of the 3 processes gets its share of the cores (at least one thread)
    monkeypatch.setattr("os.cpu_count", lambda: 12)
    assert study.main(["run", "--jobs", "3", "--data-root", str(data), "--only", "E1"]) == 0
    assert {j.env["OMP_NUM_THREADS"] for j in seen["jobs"]} == {"4"}
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert study.main(["run", "--jobs", "3", "--data-root", str(data), "--only", "E1"]) == 0
    assert {j.env["OMP_NUM_THREADS"] for j in seen["jobs"]} == {"1"}
    monkeypatch.setenv("OMP_NUM_THREADS", "5")  # the user's own setting is left alone
    assert study.main(["run", "--jobs", "3", "--data-root", str(data), "--only", "E1"]) == 0
    assert all("OMP_NUM_THREADS" not in j.env for j in seen["jobs"])
    assert ft.log.name == "e1-ft-mixer-s0.log"


def test_sequential_run_names_a_missing_upstream(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(study, "RECORDS", tmp_path)
    monkeypatch.setattr(study, "RUNS", str(tmp_path / "runs"))
    assert study.main(["run", "--only", "e1-ft-mixer-s0"]) == 2
    assert "needs e1-up-mixer first" in capsys.readouterr().err
