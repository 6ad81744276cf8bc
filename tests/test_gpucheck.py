"""The GPU check's code path on the CPU (Mixer-T/4 instead of the paper's sizes): every part
runs and writes its record; the paper-profile cost table is computed from such a record."""

from __future__ import annotations

import json

from mixer_lib.gpucheck import TINY_SIZES, check, paper_cost_rows
from mixer_lib.profiles import jobs_for


def test_gpu_check_parts_run_on_the_cpu(tmp_path):
    path = check(TINY_SIZES, updates=1, device="cpu", out_dir=tmp_path,
                 parts=("sizes", "torchrun"), gpus=2)
    record = json.loads(path.read_text())
    (size,) = record["sizes"]
    assert size["variant"] == "Mixer-T/4" and size["batch"] == 512
    assert size["micro_batch"] * size["accum_steps"] == 512
    assert size["seconds_per_update"] > 0 and size["updates_timed"] == 1
    torchrun = record["torchrun"]
    assert torchrun["ok"], torchrun.get("error")
    assert torchrun["world_size"] == 2 and "torch.distributed.run" in torchrun["command"]
    assert record["environment"]["torch"]
    assert "skipped" in record["chapter"]  # a part not run says so in the record


def test_gpu_check_chapter_part_runs_the_protocol_through_papermill(tmp_path):
    path = check(TINY_SIZES, device="cpu", out_dir=tmp_path, parts=("chapter",), gpus=1)
    chapter = json.loads(path.read_text())["chapter"]
    assert chapter["ok"], chapter.get("error")


def test_paper_cost_table_is_computed_from_the_record():
    record = {"sizes": [{"variant": "Mixer-B/16", "img_size": 224,
                         "seconds_per_update": 0.36}]}
    header, rows = paper_cost_rows(record, jobs_for("paper"))
    by_chapter = {r[0]: r for r in rows}
    # CIFAR-10: 4 learning rates + 3 repeats, 10,000 updates each
    assert by_chapter["finetune-cifar10"][1:] == [7, 10_000, "0.360", f"{7e4 * .36 / 3600:.1f}"]
    assert by_chapter["finetune-pets"][1:3] == [7, 500]
    total = sum(float(r[4]) for r in rows[:-1])
    assert abs(float(rows[-1][4]) - total) < 0.2
    _, unmeasured = paper_cost_rows({"sizes": []}, jobs_for("paper"))
    assert unmeasured[0][3] == "not measured"


def test_gpu_check_script_runs_on_the_cpu(tmp_path):
    """scripts/gpu-check.sh as a GPU machine runs it, here on the CPU at the tiny size: its
    status is the check's, the log comes back in $OUT."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PY": sys.executable, "OUT": str(out), "LIMIT": "300"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh"), "--device", "cpu",
                           "--tiny", "--updates", "1", "--parts", "sizes",
                           "--out-dir", str(tmp_path / "results")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    (record,) = (tmp_path / "results").glob("gpu-check-*.json")
    assert json.loads(record.read_text())["sizes"][0]["variant"] == "Mixer-T/4"
    assert (out / "gpu-check.log").exists()


def test_paper_cost_html_reads_every_record_or_says_none(tmp_path):
    from mixer_lib.gpucheck import paper_cost_html

    assert "No GPU check has been recorded" in paper_cost_html(tmp_path)
    (tmp_path / "gpu-check-H100.json").write_text(json.dumps({
        "gpus": 1, "sizes": [{"variant": "Mixer-B/16", "img_size": 224,
                              "seconds_per_update": 0.5}],
        "environment": {"device": "NVIDIA H100", "torch": "2.14.1", "git_commit": "abc",
                        "date": "2026-11-26"}}))
    html = paper_cost_html(tmp_path)
    assert "On NVIDIA H100 (1 GPU)" in html and "<table" in html and "0.500" in html
