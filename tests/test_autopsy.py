"""The autopsy chapter's tables and sentences, from synthetic E6 records."""

from __future__ import annotations

from mixer_lib.autopsy import (
    autopsy,
    autopsy_summary,
    autopsy_table,
    misquote_notes,
    reproduction_table,
)
from mixer_lib.published import PAPER, REPRODUCTION_MISQUOTE, REPRODUCTION_REPORT
from tests.test_claims import full_records


def test_reproduction_table_puts_each_figure_beside_the_papers_with_its_gap():
    header, rows = reproduction_table()
    assert len(header) == 8 and len(rows) == len(REPRODUCTION_REPORT)
    for row in rows:
        paper, theirs = PAPER[row[0], row[1]], REPRODUCTION_REPORT[row[0], row[1]]
        assert row[4] == f"{theirs['imagenet1k'] - paper['imagenet1k']:+.2f}"
        assert row[7] == f"{theirs['avg5'] - paper['avg5']:+.2f}"
    (key, quoted), = REPRODUCTION_MISQUOTE.items()
    assert f"quotes {quoted}" in misquote_notes() and str(PAPER[key]["imagenet1k"]) in \
        misquote_notes()


def test_summary_names_the_costly_deviations_and_those_within_noise():
    table = autopsy(full_records())
    summary = autopsy_summary(table)
    assert summary["effect_all"].startswith("-5.0 ± ")
    assert "training batch 64" in summary["costly"] and "no-flip" in summary["within"]
    assert "batch64" not in summary["within"]
    header, rows = autopsy_table(table)
    assert header[2] == "effect (points)" and rows[0][2] == "-5.00"
    pending = autopsy_summary(autopsy({}))
    assert pending == {"effect_all": "(pending)", "costly": "none", "within": "none"}
