"""Result records: collect ``results.json`` files and compare with published numbers."""

from __future__ import annotations

import json
from pathlib import Path

# Published reproduction attempt (figures as quoted in the project's issue tracker):
# Avg 5 and ImageNet top-1 for each (variant, pre-training).
REPRODUCTION_REPORT = {
    ("Mixer-B/16", "imagenet1k"): {"avg5": 84.50, "imagenet1k": 73.64},
    ("Mixer-L/16", "imagenet1k"): {"avg5": 83.63, "imagenet1k": 67.89},
    ("Mixer-B/16", "imagenet21k"): {"avg5": 86.50, "imagenet1k": 72.64},
    ("Mixer-L/16", "imagenet21k"): {"avg5": 88.70, "imagenet1k": 78.46},
}
# Paper (Tolstikhin et al., 2021, Table 2), transcribed: only the cells checked so far;
# None = not transcribed yet (shown as such, never filled in).
PAPER = {
    ("Mixer-B/16", "imagenet1k"): {"avg5": 88.33, "imagenet1k": 76.44},
    ("Mixer-L/16", "imagenet1k"): {"avg5": None, "imagenet1k": None},
    ("Mixer-B/16", "imagenet21k"): {"avg5": None, "imagenet1k": None},
    ("Mixer-L/16", "imagenet21k"): {"avg5": 93.91, "imagenet1k": 84.15},
}


def collect(*folders: str | Path) -> list[dict]:
    """Every ``results.json`` under ``folders`` (recursively) plus ``*.json`` records placed
    directly in them, each with its ``source`` path added."""
    records = []
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            continue
        for path in sorted(set(folder.rglob("results.json")) | set(folder.glob("*.json"))):
            data = json.loads(path.read_text())
            if isinstance(data, dict) and "top1" in data and "dataset" in data:
                records.append({**data, "source": str(path)})
    return records


def benchmark_records(folder: str | Path) -> list[dict]:
    """Throughput benchmark records (``benchmark-*.json``) written by benchmarks/throughput.py."""
    return [json.loads(p.read_text()) | {"source": str(p)}
            for p in sorted(Path(folder).glob("benchmark-*.json"))]
