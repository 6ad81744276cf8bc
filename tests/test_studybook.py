"""What the book shows about the study: the ledger's counts, the records table, a chapter's
verdict rows, and whether claims.json holds the current computation."""

from __future__ import annotations

import json

from mixer_lib import study, studybook


def test_ledger_summary_counts_verdicts_and_committed_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "RECORDS", tmp_path)
    run = study.study_runs()[0]
    cfg = json.loads(json.dumps(study.experiment(run.run_config()), default=str))
    (tmp_path / f"{run.name}.json").write_text(json.dumps({
        "config": cfg, "top1": 70.0, "num_eval": 5000, "wall_time_s": 120.0,
        "environment": {"device": "cpu", "git_commit": "abcdef0123456789",
                        "date": "2026-11-26T10:00"}}))
    claims = [{"verdict": "reproduced"}, {"verdict": "pending"}, {"verdict": "partly"}]
    s = studybook.ledger_summary(claims)
    assert (s["n_reproduced"], s["n_partly"], s["n_pending"], s["n_not_reproduced"]) == \
        (1, 1, 1, 0)
    assert s["n_claims"] == 3 and s["n_done"] == 1 and s["n_runs"] == len(study.study_runs())
    assert s["study_devices"] == "cpu" and s["study_minutes"] == "2"
    header, rows = studybook.records_table()
    assert rows[0] == [run.name, run.experiment, "done", "70.00", "cpu", "abcdef012345",
                       "2026-11-26T10:00", "2"]
    assert rows[1][2] == "missing" and rows[1][3] is None


def test_chapter_verdicts_and_the_committed_ledger_note(tmp_path, monkeypatch):
    header, rows = studybook.chapter_verdicts("scale")
    assert header == ["claim", "verdict", "this project's evidence"]
    assert len(rows) == 3  # data-scaling, size-vs-data, regularisation
    claims = study.current_ledger()
    monkeypatch.setattr(study, "RECORDS", tmp_path)
    assert studybook.committed_ledger_note(claims).startswith("note: ")
    (tmp_path / "claims.json").write_text(json.dumps(claims))
    assert "holds this computation" in studybook.committed_ledger_note(claims)
