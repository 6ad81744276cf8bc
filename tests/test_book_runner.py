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


def _repo_copy(target):
    """The files the book runner reads, copied (a build there never touches this checkout's
    book/chapters)."""
    import shutil

    from tests.conftest import REPO

    target.mkdir()
    for name in ("mixer_lib", "notebooks", "results", "_static", "book/lab"):
        shutil.copytree(REPO / name, target / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.ipynb"))
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy2(REPO / name, target / name)
    return target


def _book(repo, data_root, *args, env_extra=None, timeout=900):
    import os
    import subprocess
    import sys

    env = {**os.environ, "MIXER_DATA_ROOT": str(data_root),
           "MIXER_CACHE_DIR": str(repo / "cache"), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "mixer_lib.book", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_paper_profile_stops_at_the_preflight_before_any_work(tmp_path):
    import time

    repo = _repo_copy(tmp_path / "repo")
    t0 = time.perf_counter()
    done = _book(repo, tmp_path / "empty", "--profile", "paper", "--gpus", "8",
                 env_extra={"MIXER_DATA_MIRROR": "http://127.0.0.1:9"})
    assert time.perf_counter() - t0 < 60
    assert done.returncode == 2, done.stderr[-2000:]
    assert "BOOK BUILD NOT STARTED" in done.stderr and "Nothing was trained" in done.stderr
    for item in ("data: cifar10 ", "data: imagenet1k", "checkpoint: imagenet21k/Mixer-B_16",
                 "ReaL labels", "GPUs (8 wanted)"):
        assert item in done.stdout
    assert not (repo / "runs").exists() and not (repo / "book" / "chapters").exists()


def test_a_chapter_without_its_data_gets_a_not_run_page(tmp_path):
    """The quick profile on a machine with neither CIFAR-10 nor the JPEG copy (a fresh clone
    offline): the chapters that need CIFAR-10 are not run, their pages say what is missing
    and how to get it, and the whole book still builds from what did run."""
    import json

    import nbformat

    repo = _repo_copy(tmp_path / "repo")
    done = _book(repo, tmp_path / "empty",
                 env_extra={"MIXER_DATA_MIRROR": "http://127.0.0.1:9"})
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    chapters = repo / "book" / "chapters"
    build = json.loads((chapters / "build.json").read_text())
    assert build["cifar"] == "cifar10"
    status = {k: v["status"] for k, v in build["chapters"].items()}
    not_run = {"finetune-cifar10", "permutation", "token_mixing"}
    assert {k for k, v in status.items() if v == "not run"} == not_run
    assert {k for k, v in status.items() if v == "executed"} == \
        {"architecture", "weights", "claims", "scale", "autopsy", "results", "intro"}
    html = repo / "book" / "_build" / "html" / "book" / "chapters"
    assert {p.stem for p in html.glob("*.html")} >= set(status)
    assert "not run in this build" in (html / "finetune-cifar10.html").read_text()
    assert "Chapters not run in this build" in (html / "intro.html").read_text()
    page = nbformat.read(chapters / "finetune-cifar10.ipynb", as_version=4).cells[0].source
    assert page.startswith("# Fine-tuning: CIFAR-10, from scratch")
    assert "not run in this build" in page and "data: cifar10" in page
    assert "cifar-10-python.tar.gz" in page and "in this order" in page  # how to get it
    token = nbformat.read(chapters / "token_mixing.ipynb", as_version=4).cells[0].source
    assert "runs/quick/finetune-cifar10/checkpoint.pt" in token


def test_quick_profile_downloads_cifar10_from_a_reachable_archive_and_trains_on_it(tmp_path):
    import http.server
    import json
    import tarfile
    import threading

    from tests.test_data import make_cifar_batches

    src = tmp_path / "src"
    make_cifar_batches(src, "cifar10", per_class=3)
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    repo = _repo_copy(tmp_path / "repo")
    try:
        done = _book(repo, tmp_path / "data", "--only", "finetune-cifar10", "--no-html",
                     "--set", "steps=3", "train_limit=100", "eval_limit=20",
                     env_extra={"MIXER_DATA_MIRROR":
                                f"http://127.0.0.1:{httpd.server_address[1]}"})
    finally:
        httpd.shutdown()
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "data" / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    record = json.loads((repo / "runs/quick/finetune-cifar10/results.json").read_text())
    assert record["dataset"] == "cifar10" and record["steps"] == 3
    assert record["num_train"] == 100 and record["num_eval"] == 20
    executed = (repo / "book/chapters/finetune-cifar10.ipynb").read_text()
    assert "dataset: cifar10" in executed


def test_repository_button_follows_the_git_remote(tmp_path, monkeypatch):
    import yaml

    from mixer_lib import bookhtml

    assert bookhtml.repository_url("https://github.com/someone/mixer-repro.git") == \
        "https://github.com/someone/mixer-repro"
    assert bookhtml.repository_url("git@github.com:someone/mixer-repro.git") == \
        "https://github.com/someone/mixer-repro"
    assert bookhtml.repository_url("/work/main") is None and bookhtml.repository_url(None) is None
    monkeypatch.setattr(bookhtml, "_git", lambda *a: None)  # a clone without a remote
    config = yaml.safe_load(bookhtml.book_config(tmp_path / "c.yml").read_text())
    assert "repository" not in config and config["html"]["use_repository_button"] is False
    monkeypatch.setattr(bookhtml, "_git", lambda *a: "git@github.com:someone/repo.git"
                        if a[0] == "remote" else "main")
    config = yaml.safe_load(bookhtml.book_config(tmp_path / "c.yml").read_text())
    assert config["repository"] == {"url": "https://github.com/someone/repo", "branch": "main"}
    assert config["html"]["use_repository_button"] is True
    assert config["sphinx"]["config"]["mathjax_path"] == "../mathjax/tex-chtml.js"


def test_parameters_show_paths_relative_to_the_repository():
    shown = book.shown_paths(f'data_root = "{book.REPO.parent}/shared/data"\nsteps = 300\n'
                             f"run_dir = 'runs/quick/x'\n")
    assert shown == 'data_root = "../shared/data"\nsteps = 300\nrun_dir = \'runs/quick/x\'\n'


def test_bad_runner_options_are_refused_before_any_work(capsys):
    import pytest

    for argv, message in ((["--set", "steps"], "--set takes NAME=VALUE; got 'steps'"),
                          (["--gpus", "0"], "--gpus must be >= 1; got 0")):
        with pytest.raises(SystemExit) as stop:
            book.main(argv)
        assert stop.value.code == 2 and message in capsys.readouterr().err
    assert book.parse_overrides(["steps=20", "device=cpu", "grid=[0.01, 0.03]"]) == {
        "steps": 20, "device": "cpu", "grid": [0.01, 0.03]}
