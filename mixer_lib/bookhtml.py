"""The book's HTML: ``jupyter-book build`` of the executed chapters, with MathJax served from
the book itself (offline reading) and the repository button taken from this clone's GitHub
remote (none without one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def output_root(profile: str) -> Path:
    """Where ``jupyter-book`` writes a profile's ``_build/html``: ``book/`` for the quick and
    paper profiles, ``book/_build/<profile>/`` for the dry run (so it never replaces them)."""
    return REPO / "book" if profile in ("quick", "paper") else REPO / "book" / "_build" / profile


def html_dir(profile: str) -> Path:
    return output_root(profile) / "_build" / "html"


MATHJAX_PARTS = ("tex-chtml.js", "output/chtml", "input/tex", "ui", "a11y", "sre", "adaptors")


def install_mathjax(target: Path = REPO / "book" / "_mathjax" / "mathjax") -> Path:
    """Copy MathJax 3 (from the ``django-static-mathjax`` wheel, PyPI) into the book's static
    files, so equations render offline: ``_config.yml`` copies it to ``<html>/mathjax/`` (an
    extra path: jupyter-book would load every script of a static path on every page) and
    points Sphinx at it instead of a CDN. Returns the script's path."""
    import shutil

    import mathjax

    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    for part in MATHJAX_PARTS:
        src, dst = source / part, target / part
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return target / "tex-chtml.js"


def repository_url(remote: str | None) -> str | None:
    """The web address of a GitHub remote (https or ssh form), else None."""
    import re

    match = re.match(r"^(?:https://|ssh://git@|git@)github\.com[/:]([\w.-]+)/([\w.-]+?)"
                     r"(?:\.git)?/?$", (remote or "").strip())
    return f"https://github.com/{match[1]}/{match[2]}" if match else None


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def book_config(target: Path) -> Path:
    """``_config.yml`` with the repository button pointing at this clone's GitHub remote
    (``origin``), or without the button when there is none; written to ``target``."""
    import yaml

    config = yaml.safe_load((REPO / "_config.yml").read_text())
    url = repository_url(_git("remote", "get-url", "origin"))
    html = config.setdefault("html", {})
    if url:
        config["repository"] = {"url": url, "branch": _git("rev-parse", "--abbrev-ref", "HEAD")
                                or "main"}
        html["use_repository_button"] = True
    else:
        config.pop("repository", None)
        html["use_repository_button"] = False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def build_html(profile: str = "quick") -> None:
    """``jupyter-book build`` with Sphinx warnings as errors (MathJax served locally)."""
    install_mathjax()
    config = book_config(output_root(profile) / "_build" / "_config.generated.yml")
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(REPO), "--path-output",
           str(output_root(profile)), "--config", str(config), "-W", "-n", "--keep-going"]
    if subprocess.run(cmd, cwd=REPO).returncode:
        raise SystemExit("jupyter-book build failed (warnings are errors); see above")
