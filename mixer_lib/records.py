"""Result records: collect ``results.json`` files and compare with published numbers."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

# Paper Table 1, "Parameters (M)" as printed (whole millions).
PAPER_PARAMS_M = {"Mixer-S/32": 19, "Mixer-S/16": 18, "Mixer-B/32": 60, "Mixer-B/16": 59,
                  "Mixer-L/32": 206, "Mixer-L/16": 208, "Mixer-H/14": 431}
# Published reproduction attempt (figures as quoted in the project's issue tracker):
# Avg 5 and ImageNet top-1 for each (variant, pre-training).
REPRODUCTION_REPORT = {
    ("Mixer-B/16", "imagenet1k"): {"avg5": 84.50, "imagenet1k": 73.64},
    ("Mixer-L/16", "imagenet1k"): {"avg5": 83.63, "imagenet1k": 67.89},
    ("Mixer-B/16", "imagenet21k"): {"avg5": 86.50, "imagenet1k": 72.64},
    ("Mixer-L/16", "imagenet21k"): {"avg5": 88.70, "imagenet1k": 78.46},
}
# Paper (Tolstikhin et al., 2021, Table 2): ImageNet top-1 and Avg 5 after pre-training on
# ImageNet-1k (with extra regularisation) or ImageNet-21k. Transcribed without access to the
# PDF in the offline build environment, hence PAPER_VERIFIED = False: the book marks these
# cells as unverified until someone checks them against arXiv 2105.01601v4 and flips it.
PAPER = {
    ("Mixer-B/16", "imagenet1k"): {"avg5": 88.33, "imagenet1k": 76.44},
    ("Mixer-L/16", "imagenet1k"): {"avg5": 87.25, "imagenet1k": 71.76},
    ("Mixer-B/16", "imagenet21k"): {"avg5": 92.50, "imagenet1k": 80.64},
    ("Mixer-L/16", "imagenet21k"): {"avg5": 93.63, "imagenet1k": 82.89},
}
PAPER_VERIFIED = False


def html_table(header: list[str], rows: list[list[object]]) -> str:
    """A plain HTML table; cells are escaped, ``None`` is shown as "missing"."""
    def cell(value: object, tag: str) -> str:
        text = "missing" if value is None else escape(str(value))
        return f"<{tag}>{text}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def collect(*folders: str | Path) -> list[dict]:
    """Every ``results.json`` under ``folders`` (recursively) plus ``*.json`` records placed
    directly in them, each with its ``source`` path and ``run`` name (the run's folder
    relative to the collected folder, e.g. ``permutation/Mixer-T_4-global``) added."""
    records = []
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            continue
        for path in sorted(set(folder.rglob("results.json")) | set(folder.glob("*.json"))):
            data = json.loads(path.read_text())
            if isinstance(data, dict) and "top1" in data and "dataset" in data:
                run = path.parent if path.name == "results.json" else path.with_suffix("")
                records.append({**data, "source": str(path),
                                "run": str(run.relative_to(folder))})
    return records


def timm_peer(row: dict, rows: list[dict]) -> dict | None:
    """For a benchmark row of our Mixer-B/16 (``model`` "Mixer-B/16", with or without
    ``@option`` overrides): timm's ``mixer_b16_224`` row of the same dtype and mode in
    ``rows``, the peer its speed is compared with. None for other rows or without a peer."""
    if row["model"].partition("@")[0] != "Mixer-B/16":
        return None
    return next((p for p in rows if p["model"] == "timm:mixer_b16_224"
                 and p["dtype"] == row["dtype"] and p["mode"] == row["mode"]), None)


def benchmark_records(folder: str | Path) -> list[dict]:
    """Throughput benchmark records (``benchmark-*.json``) written by benchmarks/throughput.py."""
    return [json.loads(p.read_text()) | {"source": str(p)}
            for p in sorted(Path(folder).glob("benchmark-*.json"))]
