"""Result records: collection with run names, HTML tables for the book."""

from __future__ import annotations

import json

from mixer_lib.records import PAPER, REPRODUCTION_REPORT, collect, html_table, timm_peer


def test_collect_names_each_run_by_its_folder(tmp_path):
    runs = tmp_path / "runs"
    for name, top1 in (("permutation/Mixer-T_4-global", 30.0), ("finetune-cifar10", 40.0)):
        (runs / name).mkdir(parents=True)
        (runs / name / "results.json").write_text(json.dumps({"top1": top1,
                                                              "dataset": "cifar10"}))
    (runs / "notes.json").write_text(json.dumps({"not": "a result"}))
    committed = tmp_path / "results"
    committed.mkdir()
    (committed / "gpu-b16-cifar10.json").write_text(json.dumps({"top1": 98.0,
                                                               "dataset": "cifar10"}))
    records = collect(runs, committed, tmp_path / "absent")
    assert [(r["run"], r["top1"]) for r in records] == [
        ("finetune-cifar10", 40.0), ("permutation/Mixer-T_4-global", 30.0),
        ("gpu-b16-cifar10", 98.0)]


def test_html_table_escapes_and_marks_missing():
    html = html_table(["a", "b<c"], [[1, None], ["<x>", 2.5]])
    assert "<th>b&lt;c</th>" in html and "<td>missing</td>" in html
    assert "<td>&lt;x&gt;</td>" in html and html.count("<tr>") == 3


def test_published_tables_cover_the_same_runs():
    assert set(PAPER) == set(REPRODUCTION_REPORT)
    assert all(set(cells) == {"avg5", "imagenet1k", "real"} for cells in PAPER.values())
    assert all(set(cells) == {"avg5", "imagenet1k"} for cells in REPRODUCTION_REPORT.values())


def test_timm_peer_matches_model_dtype_and_mode():
    def row(model, dtype="fp32", mode="eager"):
        return {"model": model, "dtype": dtype, "mode": mode}

    rows = [row("Mixer-B/16"), row("Mixer-B/16@gelu=exact", mode="compile"),
            row("Mixer-S/32"), row("timm:mixer_b16_224"),
            row("timm:mixer_b16_224", mode="compile"), row("Mixer-B/16", dtype="bf16")]
    assert timm_peer(rows[0], rows) is rows[3]
    assert timm_peer(rows[1], rows) is rows[4]
    assert timm_peer(rows[2], rows) is None  # not our Mixer-B/16
    assert timm_peer(rows[3], rows) is None  # the peer itself
    assert timm_peer(rows[5], rows) is None  # no bf16 peer in this run
