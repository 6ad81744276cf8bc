"""What the book shows about the study as a whole: how many claims got which verdict, which
runs are committed, where and when they were made (the Claims chapter's opening and its
"where the records come from" table)."""

from __future__ import annotations

import json

from mixer_lib.claims import PENDING, VERDICTS, chapter_claims, ledger_rows
from mixer_lib.records import made_summary
from mixer_lib.study import current_ledger, record_path, status, study_runs


def _made() -> list[tuple[str, str, str, dict | None]]:
    """(name, experiment, status, record or None) for every study run."""
    out = []
    for r in study_runs():
        state = status(r)
        path = record_path(r.name)
        out.append((r.name, r.experiment, state,
                    json.loads(path.read_text()) if path.exists() else None))
    return out


def ledger_summary(claims: list[dict]) -> dict[str, object]:
    """The numbers the Claims chapter opens with: ``n_<verdict>`` per verdict (spaces as
    underscores) and ``n_pending``, ``n_claims``; ``n_done`` of ``n_runs`` study runs
    committed; the devices, training minutes and dates of the committed records."""
    out: dict[str, object] = {f"n_{v.replace(' ', '_')}": sum(c["verdict"] == v for c in claims)
                              for v in (*VERDICTS, PENDING)}
    runs = _made()
    done = [rec for _, _, state, rec in runs if state == "done"]
    made = made_summary(done)
    out |= {"n_claims": len(claims), "n_done": len(done), "n_runs": len(runs),
            **{f"study_{key}": made[key] for key in ("devices", "minutes", "dates")}}
    return out


def records_table() -> tuple[list[str], list[list]]:
    """Every study run: experiment, status, test top-1, device, commit, date, minutes."""
    rows = []
    for name, experiment, state, rec in _made():
        env = (rec or {}).get("environment", {})
        rows.append([name, experiment, state, f"{rec['top1']:.2f}" if rec else None,
                     env.get("device"), str(env.get("git_commit"))[:12] if rec else None,
                     env.get("date"), f"{rec['wall_time_s'] / 60:.0f}" if rec else None])
    return (["run", "experiment", "status", "test top-1", "device", "commit", "date",
             "minutes"], rows)


def committed_ledger_note(claims: list[dict]) -> str:
    """Whether ``results/study/claims.json`` holds this computation of the ledger."""
    from mixer_lib.study import RECORDS

    path = RECORDS / "claims.json"
    if path.exists() and json.loads(path.read_text()) == claims:
        return "results/study/claims.json holds this computation of the ledger."
    return ("note: results/study/claims.json differs from this computation; rewrite it with "
            "`python -m mixer_lib.study ledger`")


def chapter_verdicts(chapter: str, protocol_dirs: tuple[str, ...] = ()
                     ) -> tuple[list[str], list[list[str]]]:
    """The rows of the current ledger (:func:`mixer_lib.study.current_ledger`) whose evidence
    ``chapter`` shows: claim, verdict, evidence (each chapter closes with them)."""
    return ledger_rows(chapter_claims(current_ledger(protocol_dirs), chapter),
                       ("claim", "verdict", "evidence"))
