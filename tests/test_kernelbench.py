"""mixer_lib.kernelbench: the fused token-mixing kernel's records as the Claims chapter shows
them, from synthetic records and the committed ones."""

from __future__ import annotations

import json

from mixer_lib.kernelbench import UNFUSED, checks_table, kernel_summary, shapes_table

ENV = {"device": "NVIDIA H200", "date": "2026-11-27T10:00:00+00:00",
       "git_commit": "c" * 40 + " (shipped copy)"}


def write(folder, name, record):
    (folder / name).write_text(json.dumps(record))


def test_shapes_the_best_one_and_its_share_of_the_same_commits_peak(tmp_path):
    write(tmp_path, "benchmark-token-kernel-configs-NVIDIA-H200.json", {
        "environment": ENV, "results": [
            {"config": [False, 64, 64, 8, 2], "max_abs_diff": 0.02, "ms": 0.4, "tflops": 100.0},
            {"config": [True, 128, 64, 8, 2], "max_abs_diff": 0.02, "ms": 0.2, "tflops": 200.0},
            {"config": [True, 32, 64, 4, 2], "error": "illegal memory access"}]})
    rows = {128: 1000.0, 64: 800.0}
    write(tmp_path, "benchmark-perf-gpu-NVIDIA-H200.json", {
        "preset": "perf-gpu", "environment": ENV, "matmul_peak_tflops_by_dtype": {"bf16": 800.0},
        "rows": [{"model": m, "dtype": "bf16", "mode": "eager", "batch": 128,
                  "infer_img_s": rate} for m, rate in (("Mixer-B/16", rows[128]),
                                                       (UNFUSED, rows[64]))]})
    headers, shapes = shapes_table(tmp_path)
    assert shapes[1] == ["channels as rows", "128", "64", "8", "2", "0.02", "0.200", "200"]
    assert shapes[2][5:] == ["failed: illegal memory access", "-", "-"]
    summary = kernel_summary(tmp_path)
    assert summary["tk_best_ms"] == "0.200 ms" and summary["tk_best_tflops"] == "200"
    assert summary["tk_best_share"] == "25 %"
    assert summary["tk_model"] == "1.25x (bf16 autocast, batch 128)"
    assert summary["tk_where"] == summary["tk_model_where"] == "H200, 2026-11-27, commit ccccccc"


def test_the_peak_of_another_commit_is_not_used(tmp_path):
    write(tmp_path, "benchmark-token-kernel-configs-NVIDIA-H200.json", {
        "environment": ENV, "results": [
            {"config": [True, 128, 64, 8, 2], "max_abs_diff": 0.02, "ms": 0.2, "tflops": 200.0}]})
    write(tmp_path, "benchmark-perf-gpu-NVIDIA-H200.json", {
        "preset": "perf-gpu", "environment": dict(ENV, git_commit="d" * 40),
        "matmul_peak_tflops_by_dtype": {"bf16": 800.0}, "rows": []})
    summary = kernel_summary(tmp_path)
    assert summary["tk_best_share"] == summary["tk_model"] == "not measured"


def test_without_records_nothing_is_made_up(tmp_path):
    assert shapes_table(tmp_path)[1] == [] and checks_table(tmp_path)[1] == []
    assert set(kernel_summary(tmp_path).values()) == {"not measured"}


def test_the_committed_records_are_read():
    for table in (shapes_table, checks_table):
        headers, rows = table()
        assert rows and all(len(r) == len(headers) for r in rows)
    checks = checks_table()[1]
    assert all(r[4].split(" of ")[0] == r[4].split(" of ")[1] for r in checks)
    assert kernel_summary()["tk_model"] != "not measured"
