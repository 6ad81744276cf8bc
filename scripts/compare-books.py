#!/usr/bin/env python3
"""Compare what two built books show: every glued value, every table cell and every printed
line of the executed chapters (``book/chapters/*.ipynb``), as sets per book.

    python scripts/compare-books.py BEFORE/book/chapters AFTER/book/chapters [--ignore REGEX]

Prints the facts only one book shows, grouped by chapter; the default ``--ignore`` leaves out
lines that differ between any two builds (dates, commits, durations, speeds, temporary
paths). Exit status 0 when both books show the same facts, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

IGNORE = (r"\d{4}-\d\d-\d\dT|commit |[0-9a-f]{12}|min\b|minutes|\bs\)|img/s|images/s|"
          r"/tmp/|executed in|wall|elapsed|\d+(\.\d+)? ?s\b(?!\.)|GFLOP/s|ms\b")


class _Cells(HTMLParser):
    """The text of each table cell and each paragraph of an HTML fragment."""

    BLOCKS = ("td", "th", "p")

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._buf: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS:
            self._buf = []

    def handle_endtag(self, tag):
        if tag in self.BLOCKS and self._buf is not None:
            self.cells.append(" ".join("".join(self._buf).split()))
            self._buf = None

    def handle_data(self, data):
        if self._buf is not None:
            self._buf.append(data)


def facts(notebook: Path) -> set[str]:
    """Glued values (``glue name = value``), table cells, HTML paragraphs and printed lines of
    a notebook."""
    out = set()
    for cell in json.loads(notebook.read_text())["cells"]:
        for o in cell.get("outputs", []):
            data, meta = o.get("data", {}), o.get("metadata", {})
            name = meta.get("scrapbook", {}).get("name")
            if name:
                prefix = meta["scrapbook"].get("mime_prefix", "")
                out.add(f"glue {name} = {data.get(prefix + 'text/plain', '')}")
            elif "text/html" in data:
                parser = _Cells()
                parser.feed("".join(data["text/html"]))
                out |= {f"cell {c}" for c in parser.cells if c}
            if o.get("output_type") == "stream":
                out |= {f"line {x.strip()}" for x in "".join(o["text"]).splitlines()
                        if x.strip()}
    return out


def book(folder: Path, ignore: str) -> dict[str, set[str]]:
    keep = re.compile(ignore)
    return {p.stem: {f for f in facts(p) if not keep.search(f)}
            for p in sorted(folder.glob("*.ipynb"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--ignore", default=IGNORE)
    args = parser.parse_args(argv)
    a, b = book(args.before, args.ignore), book(args.after, args.ignore)
    all_a, all_b = set().union(*a.values()), set().union(*b.values())
    same = True
    for chapter in sorted(set(a) | set(b)):
        gone = sorted(f for f in a.get(chapter, set()) - b.get(chapter, set())
                      if f not in all_b)  # a fact shown by another chapter now is kept
        new = sorted(f for f in b.get(chapter, set()) - a.get(chapter, set())
                     if f not in all_a)
        if gone or new:
            same = False
            print(f"== {chapter}")
            print("".join(f"  - {f}\n" for f in gone) + "".join(f"  + {f}\n" for f in new),
                  end="")
    print(f"{len(all_a)} facts before, {len(all_b)} after, {len(all_a & all_b)} in both")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
