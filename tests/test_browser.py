"""The built book in a real browser with no network: headless Chromium (Debian's package,
installed by .ci/run) opens every page; equations are typeset by the local MathJax, every image
loads, no JavaScript error is logged and no page asks for anything off this machine.

``MIXER_SCREENSHOTS=<folder>`` also saves a full-page screenshot of every page there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mixer_lib.book import DRYRUN
from mixer_lib.bookhtml import html_dir
from tests.conftest import BOOK_ENV, skip_or_fail

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def pages(root: Path) -> list[Path]:
    skip = {"genindex.html", "search.html"}
    return sorted(p for p in root.rglob("*.html")
                  if p.name not in skip and "_static" not in p.parts
                  and "mathjax" not in p.parts and "_sources" not in p.parts
                  and 'http-equiv="Refresh"' not in p.read_text()[:500])  # redirects


def built(profile: str) -> Path:
    root = html_dir(profile)
    if not (root / "index.html").exists():
        skip_or_fail(f"{profile} book not built", BOOK_ENV)
    if CHROMIUM is None:
        skip_or_fail("chromium not installed (apt-get install chromium; .ci/run does)",
                     BOOK_ENV)
    return root


def visit_all(root: Path, shots: Path | None) -> dict[str, list[str]]:
    """Open every page; returns the problems found on each."""
    from playwright.sync_api import sync_playwright

    problems: dict[str, list[str]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        found: list[str] = []

        def route(r):
            if r.request.url.startswith("file://"):
                r.continue_()
            else:  # nothing may be fetched off this machine
                found.append(f"network request: {r.request.url}")
                r.abort()

        context.route("**/*", route)
        page.on("console", lambda m: found.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: found.append(f"javascript error: {e}"))
        page.on("requestfailed", lambda r: found.append(f"failed: {r.url}")
                if r.url.startswith("file://") else None)
        for path in pages(root):
            found.clear()
            page.goto(path.as_uri(), wait_until="load")
            has_math = page.evaluate("document.querySelectorAll('.math').length") > 0
            if has_math:
                page.wait_for_function("window.MathJax && MathJax.startup && "
                                       "MathJax.startup.promise", timeout=20_000)
                page.evaluate("MathJax.startup.promise")
                typeset = page.evaluate("document.querySelectorAll('mjx-container').length")
                raw = page.evaluate("[...document.querySelectorAll('.math')].filter("
                                    "e => !e.querySelector('mjx-container')).length")
                if typeset == 0 or raw:
                    found.append(f"equations not typeset ({typeset} typeset, {raw} raw)")
            broken = page.evaluate("[...document.images].filter(i => !i.complete || "
                                   "i.naturalWidth === 0).map(i => i.src)")
            found += [f"image did not load: {src}" for src in broken]
            if shots is not None:
                name = str(path.relative_to(root)).replace("/", "__").replace(".html", ".png")
                page.screenshot(path=str(shots / name), full_page=True)
            problems[str(path.relative_to(root))] = list(found)
        browser.close()
    return problems


@pytest.mark.parametrize("profile", ["quick", DRYRUN])
def test_every_page_renders_offline(profile):
    root = built(profile)
    shots = os.environ.get("MIXER_SCREENSHOTS")
    shot_dir = Path(shots) / profile if shots else None
    if shot_dir:
        shot_dir.mkdir(parents=True, exist_ok=True)
    problems = visit_all(root, shot_dir)
    assert len(problems) >= 8, sorted(problems)  # intro, chapters, bibliography
    assert {k: v for k, v in problems.items() if v} == {}
    assert any("architecture" in k for k in problems)
