"""What the intro reads about the build: chapters run and not run, their minutes, the runs."""

from __future__ import annotations

import json

from mixer_lib.buildinfo import build_summary, not_run_html


def test_build_summary_counts_chapters_minutes_and_runs(tmp_path):
    chapters, runs = tmp_path / "chapters", tmp_path / "runs"
    chapters.mkdir()
    (chapters / "build.json").write_text(json.dumps({"chapters": {
        "architecture": {"status": "executed"}, "permutation": {"status": "executed"},
        "finetune-cifar10": {"status": "not run", "missing": [{"item": "CIFAR-10"}]},
        "intro": {"status": "executed"}}}))
    for name, seconds in (("architecture", 60.0), ("permutation", 120.0)):
        (chapters / f"{name}.ipynb").write_text(json.dumps(
            {"metadata": {"papermill": {"duration": seconds}}}))
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "results.json").write_text(json.dumps({"wall_time_s": 90.0, "top1": 1.0,
                                                         "dataset": "x"}))
    summary = build_summary(chapters, runs)
    assert summary["n_chapters"] == 2 and summary["build_minutes"] == 3.0
    assert summary["n_runs"] == 1 and summary["train_minutes"] == 1.5
    assert "finetune-cifar10" in not_run_html(summary) and "CIFAR-10" in not_run_html(summary)
    empty = build_summary(tmp_path / "none", runs)
    assert empty["n_chapters"] == 0 and "Every chapter" in not_run_html(empty)
