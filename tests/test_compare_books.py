"""scripts/compare-books.py: what two built books show, compared fact by fact."""

from __future__ import annotations

import importlib.util
import json

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("compare_books",
                                              REPO / "scripts" / "compare-books.py")
compare_books = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_books)


def _notebook(path, glued: dict, table: list[str], lines: list[str]) -> None:
    prefix = "application/papermill.record/"  # how myst-nb's glue stores a value
    outputs = [{"output_type": "display_data", "metadata": {"scrapbook": {
        "name": k, "mime_prefix": prefix}}, "data": {prefix + "text/plain": v}}
        for k, v in glued.items()]
    outputs.append({"output_type": "display_data", "metadata": {}, "data": {
        "text/html": "<table><tr>" + "".join(f"<td>{c}</td>" for c in table) + "</tr></table>"}})
    outputs.append({"output_type": "stream", "name": "stdout", "text": "\n".join(lines)})
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": outputs}]}))


def test_same_facts_pass_and_a_changed_number_fails(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _notebook(a / "intro.ipynb", {"n": "'3'"}, ["Mixer", "71.20"], ["took 12.3 s"])
    _notebook(b / "intro.ipynb", {"n": "'3'"}, ["Mixer", "71.20"], ["took 9.9 s"])
    assert compare_books.main([str(a), str(b)]) == 0  # durations are ignored
    _notebook(b / "intro.ipynb", {"n": "'4'"}, ["Mixer", "71.25"], [])
    assert compare_books.main([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "- cell 71.20" in out and "+ cell 71.25" in out
    assert "- glue n = '3'" in out and "+ glue n = '4'" in out


def test_a_fact_moved_to_another_chapter_is_not_a_difference(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _notebook(a / "results.ipynb", {}, ["80.64"], [])
    _notebook(b / "results.ipynb", {}, [], [])
    _notebook(b / "intro.ipynb", {}, ["80.64"], [])
    assert compare_books.main([str(a), str(b)]) == 0
