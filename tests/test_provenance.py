"""Where a number came from: the commit a record names; records written as they grow."""

from __future__ import annotations

import json
import platform
import subprocess

from mixer_lib.provenance import cpu_model, environment, git_commit


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                   check=True, capture_output=True)


def test_commit_is_dirty_only_for_changed_code_not_run_outputs(tmp_path, monkeypatch):
    monkeypatch.delenv("MIXER_GIT_COMMIT", raising=False)
    repo = tmp_path / "repo"
    for path in ("mixer_lib/model.py", "runs/study/a/checkpoint.pt", "results/study/a.json"):
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text("1")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "c")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                         text=True).stdout.strip()
    assert git_commit(repo) == sha
    (repo / "runs/study/a/checkpoint.pt").write_text("2")  # a resumed run rewrote it
    (repo / "results/study/a.json").write_text("2")
    (repo / "runs/new.txt").write_text("untracked")
    assert git_commit(repo / "mixer_lib") == sha
    (repo / "mixer_lib/model.py").write_text("2")
    assert git_commit(repo) == f"{sha}-dirty"
    monkeypatch.setenv("MIXER_GIT_COMMIT", "abc123")
    assert git_commit(repo) == "abc123 (shipped copy)"


def test_device_tag_names_record_files_by_device():
    from mixer_lib.provenance import device_tag

    assert device_tag("cpu (x86_64, 2 cores)") == "cpu"
    assert device_tag("NVIDIA H200") == "NVIDIA-H200"
    assert device_tag("NVIDIA H100 80GB HBM3") == "NVIDIA-H100-80GB-HBM3"


def test_records_are_read_back_oldest_first_and_filtered(tmp_path):
    import json

    from mixer_lib.provenance import latest_record, read_records

    for name, date, preset in (("b", "2026-11-27", "x"), ("a", "2026-11-28", "y"),
                               ("c", "2026-11-26", "x")):
        (tmp_path / f"bench-{name}.json").write_text(json.dumps(
            {"preset": preset, "environment": {"date": date}}))
    (tmp_path / "other.json").write_text("{}")
    assert [r["environment"]["date"] for r in read_records(tmp_path, "bench-*.json")] == [
        "2026-11-26", "2026-11-27", "2026-11-28"]
    assert latest_record(tmp_path, "bench-*.json")["preset"] == "y"
    assert latest_record(tmp_path, "bench-*.json", lambda r: r["preset"] == "x")[
        "environment"]["date"] == "2026-11-27"
    assert latest_record(tmp_path, "none-*.json") is None


def test_add_result_appends_rewrites_and_prints(tmp_path, capsys):
    from mixer_lib.provenance import add_result

    record = {"results": []}
    add_result(record, {"a": 1}, tmp_path / "r.json")
    add_result(record, {"a": 2}, None)  # not written without a path
    assert json.loads((tmp_path / "r.json").read_text()) == {"results": [{"a": 1}]}
    assert record["results"] == [{"a": 1}, {"a": 2}]
    assert capsys.readouterr().out.splitlines() == ['{"a": 1}', '{"a": 2}']


def test_environment_names_the_processor_with_its_family_and_model(tmp_path):
    """CPU timings differ by processor: records name it as Linux does, with the numbers that
    tell one generation from the next (a VM's "AMD EPYC" alone does not)."""
    info = tmp_path / "cpuinfo"
    block = ("processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
             "model name\t: AMD EPYC {n}\nflags\t\t: fpu avx512f\n\n")
    info.write_text(block.format(n=0) + block.format(n=1))
    assert cpu_model(info) == "AMD EPYC 0 (family 25, model 17)"  # the first processor's
    info.write_text("processor\t: 0\nmodel name\t: Some ARM core\n")
    assert cpu_model(info) == "Some ARM core"
    assert cpu_model(tmp_path / "absent") == (platform.processor() or None)
    assert environment()["processor"] == cpu_model()
