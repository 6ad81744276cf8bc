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


def test_scale_runs_mirror_the_papers_design():
    """E7: every model at every subset size with the same number of updates; sizes span 20x;
    two seeds; E8 at the smallest and largest sizes; E9 with the paper's regularisation."""
    runs = study.scale_runs()
    assert len({r.name for r in runs}) == len(runs)
    e7 = [r for r in runs if r.experiment == "E7"]
    sizes = sorted({r.config["train_limit"] for r in e7})
    assert sizes[-1] / sizes[0] >= 20 and len(sizes) >= 3
    assert {r.config["steps"] for r in runs} == {study.SCALE["steps"]}
    assert {r.config["variant"] for r in e7} == {"Mixer-T/4", "ViT-T/4", "ResNet-S"}
    assert {r.config["seed"] for r in runs} == set(study.SEEDS) and len(study.SEEDS) >= 2
    assert all(r.config["classes"] == "0-4" and r.config["precision"] == "fp32" for r in runs)
    e8 = [r for r in runs if r.experiment == "E8"]
    assert {r.config["train_limit"] for r in e8} == {sizes[0], sizes[-1]}
    e9 = [r for r in runs if r.experiment == "E9"]
    assert e9 and all(r.config["randaugment"] == "2,15" and r.config["mixup_alpha"] == 0.5
                      and r.config["drop_path_rate"] == 0.1 for r in e9)
    for r in runs:  # every definition is a valid run
        r.run_config()


def test_a_scale_record_carries_the_probe_and_no_unit_weights(tmp_path, monkeypatch):
    from tests.test_data import make_image_folder

    root = make_image_folder(tmp_path / "d", classes=tuple("abcdefghij"), per_class=3)
    monkeypatch.setattr(study, "RECORDS", tmp_path / "records")
    monkeypatch.setattr(study, "RUNS", "runs")
    monkeypatch.setattr(study, "REPO", tmp_path)
    monkeypatch.setattr(study, "PROBE", dict(shots=(1, 2), draws=2))
    base = dict(study.SCALE, dataset=f"imagefolder:{root}", img_size=16, steps=2,
                batch_size=4, eval_every=2, checkpoint_every=2, log_every=1, train_limit=5)
    for variant in ("Mixer-T/4", "ViT-T/4"):
        run = study.StudyRun(f"e7-{variant[:3]}", "E7", dict(base, variant=variant))
        record = study.execute(run, None, 0, progress=False)
        assert record["fewshot"]["classes"] == "5-9" and record["fewshot"]["num_test"] == 15
        assert "token_mixing" not in record and record["num_train"] == 5
        assert json.loads(study.record_path(run.name).read_text()) == record
