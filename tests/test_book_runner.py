"""The book runner's skip logic: a chapter re-executes exactly when one of its inputs changed."""

from __future__ import annotations

import mixer_lib.book as book
from mixer_lib.book import Job, inputs_digest


def test_digest_follows_declared_reads_only(tmp_path, monkeypatch):
    for rel, text in {"notebooks/results.md": "# results", "mixer_lib/x.py": "X = 1",
                      "runs/quick/a/results.json": "{}", "results/bench.json": "{}",
                      "runs/quick/a/checkpoint.pt": "weights"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(book, "REPO", tmp_path)
    monkeypatch.setattr(book, "NOTEBOOKS", tmp_path / "notebooks")
    reader = Job("results", "results", reads=("runs/quick/**/results.json", "results/*.json"))
    other = Job("results", "other")
    before = inputs_digest(reader, {}), inputs_digest(other, {})

    (tmp_path / "runs/quick/a/checkpoint.pt").write_text("new weights")  # not declared
    assert (inputs_digest(reader, {}), inputs_digest(other, {})) == before
    (tmp_path / "results/bench.json").write_text('{"rows": []}')  # declared by reader only
    assert inputs_digest(reader, {}) != before[0]
    assert inputs_digest(other, {}) == before[1]
    changed = inputs_digest(reader, {})
    (tmp_path / "mixer_lib/x.py").write_text("X = 2")  # library code: every chapter
    assert inputs_digest(reader, {}) != changed and inputs_digest(other, {}) != before[1]
    assert inputs_digest(other, {"profile": "paper"}) != inputs_digest(other, {})


def test_chapter_parameters_are_checked_before_any_work(tmp_path):
    """``papermill ... -p steps ten`` stops the fine-tuning chapter with RunConfig's message
    before any data is read or the run folder written."""
    import jupytext
    import papermill as pm
    import pytest

    nb = jupytext.read(book.NOTEBOOKS / "finetune.md")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    source = tmp_path / "finetune.ipynb"
    jupytext.write(nb, source)
    run_dir = tmp_path / "run"
    for name, value, message in [("steps", "ten", "steps must be an integer; got the text 'ten'"),
                                 ("lr", -1, "lr must be > 0; got -1"),
                                 ("img_size", 30, "img_size 30 is not a multiple"),
                                 ("repeats", "three", "repeats must be an integer"),
                                 ("grid", "0.01,fast", "grid must be comma-separated")]:
        with pytest.raises(pm.PapermillExecutionError) as err:
            pm.execute_notebook(str(source), str(tmp_path / "out.ipynb"),
                                parameters={name: value, "run_dir": str(run_dir),
                                            "data_root": str(tmp_path / "no-data")},
                                cwd=str(book.REPO), kernel_name="python3", progress_bar=False)
        assert err.value.ename == "ConfigError" and message in err.value.evalue
        assert not run_dir.exists()
