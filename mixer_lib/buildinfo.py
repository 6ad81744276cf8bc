"""What a built book says about itself: which chapters ran, which were not run and why
(``book/chapters/build.json``, written by :mod:`mixer_lib.book`), how long they took, and the
runs their records describe. The intro reads it."""

from __future__ import annotations

import json
from pathlib import Path

from mixer_lib.records import collect


def build_summary(chapters_dir: str | Path, runs_dir: str | Path) -> dict:
    """``n_chapters`` (executed, the intro left out), ``build_minutes`` (their notebooks'
    last execution), ``n_runs`` and ``train_minutes`` (the result records under
    ``runs_dir``), and ``not_run``: chapter -> what it misses."""
    chapters_dir = Path(chapters_dir)
    manifest = chapters_dir / "build.json"
    build = json.loads(manifest.read_text()) if manifest.exists() else {"chapters": {}}
    chapters = [name for name in build["chapters"] if name != "intro"]
    not_run = {name: c["missing"] for name, c in build["chapters"].items()
               if c["status"] == "not run"}
    seconds = 0.0
    for name in chapters:
        path = chapters_dir / f"{name}.ipynb"
        if path.exists():
            seconds += json.loads(path.read_text())["metadata"].get("papermill", {}).get(
                "duration") or 0.0
    records = collect(runs_dir)
    return {"n_chapters": len(chapters) - len(not_run), "build_minutes": seconds / 60,
            "n_runs": len(records),
            "train_minutes": sum(r.get("wall_time_s", 0.0) for r in records) / 60,
            "not_run": not_run}


def not_run_html(summary: dict) -> str:
    """The chapters this build did not run, with what each misses (or a sentence that every
    chapter ran)."""
    from mixer_lib.records import html_table

    if not summary["not_run"]:
        return "<p>Every chapter of this profile ran.</p>"
    return ("<p><b>Chapters not run in this build</b> (what they read is not here; each page "
            "says how to get it):</p>" + html_table(
                ["chapter", "missing"], [[name, "; ".join(m["item"] for m in missing)]
                                         for name, missing in summary["not_run"].items()]))
