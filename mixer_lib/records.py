"""Result records: collect ``results.json`` files and compare with published numbers."""

from __future__ import annotations

import json
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import Any

from mixer_lib.config import RunConfig
from mixer_lib.evaluate import EvalResult
from mixer_lib.published import (
    OFFICIAL_README_CIFAR10,
    PAPER,
    REPRODUCTION_REPORT,
)
from mixer_lib.recipes import STANDIN_PREFIX


def result_record(cfg: RunConfig, ev: EvalResult, names: list[str], num_train: int,
                  load_report: str, env: dict, **extra: Any) -> dict[str, Any]:
    """The ``results.json`` record the book reads: metrics, data, weights, provenance.
    ``extra`` adds fields and may override ``top1`` (``report="best"``)."""
    return {
        "dataset": cfg.dataset, "variant": cfg.variant, "weights": cfg.weights,
        "recipe": cfg.recipe, "img_size": cfg.img_size, "steps": cfg.steps,
        "eval_split": cfg.eval_split, "eval_crop": cfg.eval_crop, "top1": ev.top1,
        "top5": ev.top5, "eval_loss": ev.loss, "num_eval": ev.num_samples,
        "num_train": num_train, "per_class": [[i, name, top1] for i, (name, top1) in
                      enumerate(zip(names, ev.per_class, strict=True))],
        "confusion": ev.confusion.tolist(), "class_names": names,
        "weights_report": load_report, "data": describe_data(cfg), **extra,
        "config": asdict(cfg), "environment": env,
    }


def describe_data(cfg: RunConfig) -> str:
    """Which data a run used, in words (shown next to results in the book)."""
    what = {"cifar10-jpeg": "real CIFAR-10 images stored as JPEG q75 (shared/data copy)"}
    text = what.get(cfg.dataset, cfg.dataset)
    if cfg.eval_split == "val":
        text += "; training split less its dev slice"
    if cfg.train_limit:
        text += f"; {cfg.train_limit} class-balanced training images"
    if cfg.eval_limit:
        text += f"; {cfg.eval_limit} class-balanced {cfg.eval_split} images"
    return text + f"; {cfg.img_size}px"


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


def benchmark_table(rec: dict) -> tuple[list[str], list[list[str]]]:
    """A throughput record (``benchmarks/throughput.py``) as a table: each row's speeds, our
    Mixer-B/16's training speed against timm's ``mixer_b16_224`` in the same dtype and mode,
    and on a GPU the peak memory and MFU."""
    on_gpu = any(r["peak_mem_gib"] is not None for r in rec["rows"])
    rows = []
    for r in rec["rows"]:
        ref = timm_peer(r, rec["rows"])
        rows.append([r["model"], r["dtype"], r["mode"], r["batch"], f"{r['gflops_fwd']:.1f}",
                     f"{r['infer_img_s']:.1f}", f"{r['train_img_s']:.1f}",
                     f"{r['train_img_s'] / ref['train_img_s']:.2f}x" if ref else ""]
                    + ([f"{r['peak_mem_gib']:.1f}", f"{100 * r['mfu']:.0f}%"] if on_gpu else []))
    header = ["model", "dtype", "mode", "batch", "GFLOPs", "infer img/s", "train img/s",
              "train vs timm Mixer-B/16"] + (["peak mem GiB", "MFU"] if on_gpu else [])
    return header, rows


def benchmark_provenance(rec: dict) -> str:
    """Where a benchmark record came from: file, preset, device, torch, commit, date."""
    env = rec["environment"]
    return (f"{rec['source']}: preset {rec['preset']}, {env['device']}, torch {env['torch']}, "
            f"commit {str(env['git_commit'])[:10]}, {env['date']}")


def benchmark_records(folder: str | Path) -> list[dict]:
    """Throughput benchmark records (``benchmark-*.json``) written by benchmarks/throughput.py."""
    return [json.loads(p.read_text()) | {"source": str(p)}
            for p in sorted(Path(folder).glob("benchmark-*.json"))]


# ----------------------------------------------------------------- protocol records

def collect_protocols(*folders: str | Path) -> list[dict]:
    """Every ``protocol.json`` (written by :mod:`mixer_lib.protocol`) under ``folders``."""
    found = []
    for folder in folders:
        folder = Path(folder)
        for path in sorted(folder.rglob("protocol.json")) if folder.exists() else []:
            found.append({**json.loads(path.read_text()), "source": str(path)})
    return found


def measured(mean: float | None, std: float | None = None, dry_run: bool = False) -> str | None:
    """A measured figure as shown in the book: ``"82.31 ± 0.12"``; dry-run figures carry the
    label ``"dry run: "`` so they can never be read as results. None when not measured."""
    if mean is None:
        return None
    text = f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")
    return f"dry run: {text}" if dry_run else text


def comparison_rows(protocols: list[dict], not_run: str | None = None
                    ) -> tuple[list[str], list[list[object]]]:
    """The results chapter's comparison: for each (variant, pre-training) fine-tuned in this
    build (else each the paper reports), our ImageNet top-1, ReaL and CIFAR-10 (means ± std
    over the final runs) and Avg 5, beside the paper's Table 3, the official README's CIFAR-10
    and the published reproduction's figures. Our CIFAR-10 appears twice: evaluated as the
    paper's text says (resize the smaller side, crop; Table 3's figures) and by plain resizing
    as the official code does (the README's figures; :mod:`mixer_lib.evaluators`).
    ``not_run`` is shown in our cells that no record of this build fills (say what would fill
    them); None leaves them empty."""
    from mixer_lib.evaluate import avg5

    groups: dict[tuple[str, str], dict[str, dict]] = {}
    for p in protocols:
        if p.get("test_top1_mean") is None:
            continue
        groups.setdefault((p["variant"], p["weights"]), {})[
            p["dataset"].removeprefix(STANDIN_PREFIX)] = p
    keys = list(groups) or list(PAPER)
    header = ["variant", "pre-training", "ours: ImageNet", "ours: ReaL", "ours: Avg 5",
              "ours: CIFAR-10", "ours: CIFAR-10, resized (as the README)", "paper: ImageNet",
              "paper: ReaL", "paper: Avg 5", "official README: CIFAR-10",
              "reproduction: ImageNet", "reproduction: Avg 5"]
    rows = []
    for key in keys:
        ours = groups.get(key, {})
        dry = any(p.get("dry_run") for p in ours.values())
        imnet, c10 = ours.get("imagenet1k"), ours.get("cifar10")
        a5 = avg5({d: p["test_top1_mean"] for d, p in ours.items()})
        paper, repro = PAPER.get(key, {}), REPRODUCTION_REPORT.get(key, {})
        rows.append([
            *key,
            measured(imnet["test_top1_mean"], imnet["test_top1_std"], dry) if imnet else None,
            measured(imnet.get("real_top1_mean"), imnet.get("real_top1_std"), dry)
            if imnet else None,
            measured(a5.value, None, dry),
            measured(c10["test_top1_mean"], c10["test_top1_std"], dry) if c10 else None,
            measured(c10.get("test_top1_resize_mean"), c10.get("test_top1_resize_std"), dry)
            if c10 else None,
            paper.get("imagenet1k"), paper.get("real"), paper.get("avg5"),
            OFFICIAL_README_CIFAR10.get(key),
            repro.get("imagenet1k"), repro.get("avg5"),
        ])
        if not_run is not None:
            rows[-1][2:7] = [not_run if v is None else v for v in rows[-1][2:7]]
    return header, rows


def per_class_rows(result: dict) -> list[list[object]]:
    """``[index, name, top-1]`` for every class of a result record. Records keep the rows as
    such since class names can repeat (ImageNet: "crane", "maillot"); older records kept a
    name -> top-1 mapping, read here in its order."""
    per_class = result["per_class"]
    if isinstance(per_class, dict):
        return [[i, name, top1] for i, (name, top1) in enumerate(per_class.items())]
    return [list(row) for row in per_class]



def per_class_table(result: dict, dry_run: bool = False) -> tuple[list[str], list[list]]:
    """The per-class accuracy of a result record as the book shows it: index, class, top-1
    on the evaluated split (labelled in a dry run)."""
    return (["index", "class", f"{result['eval_split']} top-1 (%)"],
            [[i, name, measured(v, None, dry_run)] for i, name, v in per_class_rows(result)])


def inventory(records: list[dict], protocols: list[dict], benches: list[dict]) -> str:
    """How many result, protocol and benchmark records a page reads, and the dry-run banner
    when any protocol record is a dry run."""
    text = (f"{len(records)} result records, {len(protocols)} protocol records, "
            f"{len(benches)} benchmark records")
    if any(p.get("dry_run") for p in protocols):
        text += ("\nDRY RUN: stand-in data and weights; every figure of ours is labelled "
                 "'dry run' and is not a result.")
    return text


def protocol_table(protocols: list[dict]) -> tuple[list[str], list[list]]:
    """Each protocol record: dataset, model, dev top-1 per learning rate, the chosen rate,
    test top-1 (mean ± std over the final runs) and how many final runs."""
    rows = [[p["dataset"], f"{p['variant']} ({p['weights']})",
             ", ".join(f"{lr}: {measured(v, None, p['dry_run'])}"
                       for lr, v in p["dev_top1"].items()),
             p["chosen_lr"], measured(p["test_top1_mean"], p["test_top1_std"], p["dry_run"]),
             len(p["test_top1"])] for p in protocols]
    return (["dataset", "model", "dev top-1 by learning rate", "chosen lr",
             "test top-1 (mean ± std)", "final runs"], rows)


def run_table(records: list[dict]) -> tuple[list[str], list[list]]:
    """One row per result record: run, model (weights), dataset, input shuffle, top-1,
    top-5, updates, train / test images at the resolution; dry-run figures labelled."""
    rows = []
    for r in records:
        cfg, dry = r["config"], r["dataset"].startswith(STANDIN_PREFIX)
        rows.append([r["run"], f"{r['variant']} ({r['weights']})", r["dataset"],
                     cfg.get("permutation", "none"), measured(r["top1"], None, dry),
                     measured(r["top5"], None, dry), r["steps"],
                     f"{r['num_train']} / {r['num_eval']} at {cfg['img_size']} px"])
    return (["run", "model (weights)", "dataset", "input shuffle", "top-1", "top-5",
             "updates", "train / test images"], rows)


def run_provenance(records: list[dict]) -> str:
    """One line per result record: its data, device, torch, commit and date."""
    return "\n".join(f"{r['run']}: {r['data']}; {r['environment']['device']}, torch "
                     f"{r['environment']['torch']}, commit "
                     f"{str(r['environment']['git_commit'])[:10]}, {r['environment']['date']}"
                     for r in records)


def made_summary(records: list[dict]) -> dict[str, str]:
    """Where and when run records were made: their ``devices``, ``commits`` (12 characters)
    and ``dates``, each sorted and comma-separated ("(none yet)" without records), and the
    ``minutes`` they took together: every process of a run (``wall_time_total_s``), or for
    records made before checkpoints carried their time, the process that finished it."""
    env = [r["environment"] for r in records]

    def listed(values: set[str]) -> str:
        return ", ".join(sorted(values)) or "(none yet)"

    seconds = sum(r.get("wall_time_total_s", r["wall_time_s"]) for r in records)
    return {"devices": listed({e["device"] for e in env}),
            "commits": listed({str(e["git_commit"])[:12] for e in env}),
            "dates": listed({e["date"][:10] for e in env}),
            "minutes": f"{seconds / 60:.0f}"}
