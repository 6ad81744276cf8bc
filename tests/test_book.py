"""The built HTML book (``make book``): chapters, Table 1, figures, no errored cells."""

from __future__ import annotations

import json
import re

import pytest

from mixer_lib.book import CHAPTERS, DRYRUN, PROFILES
from mixer_lib.bookhtml import html_dir as profile_html
from tests.conftest import BOOK_ENV, REPO, skip_or_fail

HTML = REPO / "book" / "_build" / "html"


@pytest.fixture(scope="module")
def html_dir():
    if not (HTML / "index.html").exists():
        skip_or_fail("book not built; run `make book` first", BOOK_ENV)
    return HTML


def test_every_chapter_exists(html_dir):
    for job in PROFILES["quick"]:
        page = html_dir / "book" / "chapters" / f"{job.output}.html"
        assert page.exists(), page
    assert (html_dir / "book" / "chapters" / "intro.html").exists()


def test_table1_lists_all_variants_with_computed_counts(html_dir):
    text = (html_dir / "book" / "chapters" / "architecture.html").read_text()
    # head-less counts (Table 1 leaves the head out), then the paper's figure
    for name, count, paper in [("Mixer-S/32", "18.59", 19), ("Mixer-S/16", "18.02", 18),
                               ("Mixer-B/32", "59.52", 60), ("Mixer-B/16", "59.11", 59),
                               ("Mixer-L/32", "205.91", 206), ("Mixer-L/16", "207.17", 207),
                               ("Mixer-H/14", "431.07", 431)]:
        assert re.search(rf"<td>{re.escape(name)}</td>.*?<td>{count}</td><td>{paper}</td>",
                         text, re.S), name


def test_figures_are_embedded_images(html_dir):
    for page in ("architecture", "finetune-cifar10-jpeg", "permutation", "token_mixing"):
        text = (html_dir / "book" / "chapters" / f"{page}.html").read_text()
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', text)
        assert images, page
        for src in images:
            assert (html_dir / "book" / "chapters" / src).resolve().exists(), src


def test_no_notebook_cell_errored():
    """Every chapter the last build executed (``build.json``) has its executed notebook, with
    code cells that ran and no error output."""
    manifest = CHAPTERS / "build.json"
    if not manifest.exists():
        skip_or_fail("the book not built; run `make book` first", BOOK_ENV)
    chapters = json.loads(manifest.read_text())["chapters"]
    executed = [name for name, entry in chapters.items() if entry["status"] != "not run"]
    assert executed, f"{manifest} lists no executed chapter"
    for name in executed:
        path = CHAPTERS / f"{name}.ipynb"
        assert path.exists(), f"{path} is listed as executed but missing"
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        assert any(c.get("outputs") for c in cells), f"{name}: no code cell has output"
        for cell in cells:
            for out in cell.get("outputs", []):
                assert out.get("output_type") != "error", (name, out.get("evalue"))


def test_no_page_of_either_build_shows_an_error_output():
    """The HTML of the quick book and of the dry run: no rendered traceback on any chapter."""
    builds = [d for d in (HTML, profile_html(DRYRUN)) if (d / "index.html").exists()]
    if len(builds) < 2:
        skip_or_fail("the quick book and the paper dry run not built; run `make book` and "
                     "`make book PROFILE=paper-dryrun` first", BOOK_ENV)
    for build in builds:
        pages = sorted((build / "book" / "chapters").glob("*.html"))
        assert len(pages) >= len(PROFILES["quick"]), build
        for page in pages:
            assert not re.search(r'class="[^"]*\btraceback\b', page.read_text()), page


def test_paper_dry_run_fills_every_comparison_cell_labelled_dry_run():
    """``make book PROFILE=paper-dryrun``: every chapter of the paper profile executed, and
    the intro's comparison table has every cell filled, ours labelled "dry run" (our CIFAR-10
    twice: evaluated as Table 3 and by plain resizing, as the official README)."""
    html = profile_html(DRYRUN)
    if not (html / "index.html").exists():
        skip_or_fail("dry run not built; run `make book PROFILE=paper-dryrun` first", BOOK_ENV)
    for job in PROFILES[DRYRUN]:
        assert (html / "book" / "chapters" / f"{job.output}.html").exists(), job.output
    text = (html / "book" / "chapters" / "intro.html").read_text()
    table = re.search(r"<table><thead><tr><th>variant</th>.*?</table>", text, re.S).group(0)
    header = re.findall(r"<th>(.*?)</th>", table)
    rows = re.findall(r"<tr>(<td>.*?)</tr>", table)
    assert header[2:7] == ["ours: ImageNet", "ours: ReaL", "ours: Avg 5", "ours: CIFAR-10",
                           "ours: CIFAR-10, resized (as the README)"]
    assert len(rows) == 1
    cells = re.findall(r"<td>(.*?)</td>", rows[0])
    assert len(cells) == len(header) and "missing" not in cells
    assert all(c.startswith("dry run: ") for c in cells[2:7]), cells
    assert cells[:2] == ["Mixer-B/16", "imagenet21k"] and cells[7] == "80.64"


def test_chapter_code_cells_are_short():
    """Notebooks hold narrative, parameters and results: no code cell outside the parameters
    cell has more than 15 non-blank lines (logic lives in mixer_lib, where it is tested)."""
    long = []
    for path in sorted((REPO / "notebooks").glob("*.md")):
        text = path.read_text()
        for m in re.finditer(r"```\{code-cell\}[^\n]*\n(.*?)```", text, re.S):
            body = m.group(1)
            if ":tags: [parameters]" in body:
                continue
            if body.startswith("---"):  # the cell's MyST options (figure caption, name)
                body = body.split("---", 2)[2]
            lines = [line for line in body.splitlines() if line.strip()]
            if len(lines) > 15:
                long.append(f"{path.name}:{text[:m.start()].count(chr(10)) + 1} "
                            f"({len(lines)} lines)")
    assert not long, long
