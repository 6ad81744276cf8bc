"""The GPU check: the paper profile's training path at the paper's sizes, a few updates each.

``python -m mixer_lib.gpucheck`` (what ``scripts/gpu-check.sh`` runs, in at most 8 minutes):

1. **sizes**: Mixer-B/16 at 224 px, L/16 at 224 px and L/16 at 448 px; global batch 512, bf16,
   with the micro-batches and checkpointing the run itself chooses
   (:func:`mixer_lib.runtime.execution_plan`), through the training loop's own ``update()`` on
   synthetic batches: seconds per update and peak memory of each, beside the plan's estimate;
2. **torchrun**: a few updates of B/16 at 224 px through ``mixer_lib.train`` on a generated
   image folder, under torchrun with NCCL on every GPU of the machine (one process where
   there is one);
3. **chapter**: the fine-tuning chapter with ``protocol=True`` (grid of two, one repeat, two
   updates each) on the same stand-in, through papermill, as the book runs it.

It writes ``results/gpu-check-<device>.json``; the intro's table of what the paper profile
costs (:func:`paper_cost_rows`) is computed from that record.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mixer_lib.profiles import Job

SIZES = (("Mixer-B/16", 224), ("Mixer-L/16", 224), ("Mixer-L/16", 448))
TINY_SIZES = (("Mixer-T/4", 32),)  # for a CPU test of the same code


def measure_size(variant: str, img_size: int, batch: int, updates: int, device: str,
                 precision: str) -> dict[str, Any]:
    """``updates`` optimiser updates of ``variant`` through ``step.update`` with the
    execution plan the run would choose; the first update (warm-up) is not timed."""
    import torch

    from mixer_lib.config import RunConfig
    from mixer_lib.distributed import World
    from mixer_lib.optim import make_optimizer
    from mixer_lib.runtime import compute_dtype, execution_plan
    from mixer_lib.start import build_model
    from mixer_lib.step import update

    dev = torch.device(device)
    cfg = RunConfig(dataset="cifar10-jpeg", variant=variant, img_size=img_size,
                    batch_size=batch, steps=updates + 1, device=device, precision=precision,
                    recipe="finetune").resolved()
    cfg, plan = execution_plan(cfg, dev, World())
    model, _ = build_model(cfg, 1000)
    model.to(dev).train()
    optimizer = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum,
                               cfg.weight_decay)
    micro = cfg.batch_size // cfg.accum_steps
    x = torch.randn(micro, 3, img_size, img_size, device=dev)
    y = torch.randint(0, 1000, (micro,), device=dev)
    batches = itertools.repeat((x, y))
    amp = compute_dtype(cfg, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for step in range(updates + 1):
        t0 = time.perf_counter()
        update(model, model, optimizer, batches, cfg, step, 1000, dev, amp, World())
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times[1:])
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    return {"variant": variant, "img_size": img_size, "batch": batch,
            "precision": "bf16" if amp is not None else "fp32",
            "micro_batch": micro, "accum_steps": cfg.accum_steps,
            "grad_checkpointing": cfg.grad_checkpointing == "on",
            "seconds_per_update": seconds, "img_per_s": batch / seconds,
            "updates_timed": len(times) - 1, "peak_memory_bytes": peak,
            "plan": plan.as_dict() if plan else None}


def make_standin(root: Path, classes: int = 10, per_class: int = 16, side: int = 64) -> Path:
    """A small image folder of random JPEGs (train/ and test/), for the torchrun and chapter
    parts: the check is about the GPU path, not the data."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    return root


def run_torchrun(standin: Path, out: Path, gpus: int, variant: str, img_size: int,
                 batch: int, device: str) -> dict[str, Any]:
    """A few updates through ``mixer_lib.train`` under torchrun (one process when
    ``gpus`` is 1); NCCL on GPUs."""
    args = ["-m", "mixer_lib.train", "--out", str(out), "--dataset", f"imagefolder:{standin}",
            "--variant", variant, "--img-size", str(img_size), "--batch-size", str(batch),
            "--steps", "3", "--warmup-steps", "1", "--lr", "0.01", "--device", device,
            "--eval-every", "3", "--no-progress"]
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={gpus}"] if gpus > 1 else [sys.executable])
    command = [*launch, *args]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    record = {"command": shlex.join(command), "processes": gpus, "ok": done.returncode == 0,
              "seconds": time.perf_counter() - t0, "backend": "nccl" if
              device.startswith("cuda") and gpus > 1 else None}
    if done.returncode:
        record["error"] = done.stderr[-2000:]
    else:
        result = json.loads((out / "results.json").read_text())
        record["world_size"] = result["environment"]["world_size"]
        record["memory_plan"] = result["environment"].get("memory_plan")
    return record


def run_chapter(standin: Path, run_dir: Path, gpus: int, variant: str, img_size: int,
                device: str) -> dict[str, Any]:
    """The fine-tuning chapter with the protocol on the stand-in, through papermill."""
    from mixer_lib.book import NotebookFailed, run_notebook

    parameters = {"dataset": f"imagefolder:{standin}", "variant": variant, "weights": "random",
                  "recipe": "finetune", "img_size": img_size, "steps": 2, "batch_size": 64,
                  "lr": None, "train_limit": None, "eval_limit": None, "device": device,
                  "run_dir": str(run_dir), "download": False, "protocol": True,
                  "grid": [0.01, 0.03], "repeats": 1, "gpus": gpus}
    t0 = time.perf_counter()
    record: dict[str, Any] = {"ok": True, "gpus": gpus}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            run_notebook("finetune", Path(tmp) / "out.ipynb", parameters, progress=False)
        except NotebookFailed as err:
            record.update(ok=False, error=str(err)[-2000:])
    return record | {"seconds": time.perf_counter() - t0}


def device_slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def check(sizes=SIZES, updates: int = 3, device: str = "cuda", out_dir: Path = Path("results"),
          parts: tuple[str, ...] = ("sizes", "torchrun", "chapter"),
          gpus: int | None = None) -> Path:
    """Run the check and write its record; returns the record's path."""
    import torch

    from mixer_lib.driver import driver_version
    from mixer_lib.provenance import device_name, environment, write_json

    dev = torch.device(device)
    if gpus is None:
        gpus = torch.cuda.device_count() if dev.type == "cuda" else 1
    record: dict[str, Any] = {"check": "gpu-check", "environment": environment(dev),
                              "gpus": gpus, "driver": driver_version(),
                              "cuda": torch.version.cuda, "sizes": [],
                              **{p: {"skipped": f"not among --parts {','.join(parts)}"}
                                 for p in ("torchrun", "chapter")}}
    name = device_name(dev)
    path = out_dir / f"gpu-check-{device_slug(name)}.json"
    variant, img_size = sizes[0]
    for part in parts:
        if part == "sizes":
            for v, s in sizes:
                print(f"== {v} at {s} px, batch 512", flush=True)
                row = measure_size(v, s, 512, updates, device, "bf16")
                print(json.dumps(row), flush=True)
                record["sizes"].append(row)
                write_json(path, record)
        elif part in ("torchrun", "chapter"):
            with tempfile.TemporaryDirectory() as tmp:
                standin = make_standin(Path(tmp) / "standin")
                print(f"== {part} ({gpus} process(es))", flush=True)
                if part == "torchrun":
                    record["torchrun"] = run_torchrun(standin, Path(tmp) / "run", gpus,
                                                      variant, img_size, 64 * gpus, device)
                else:
                    record["chapter"] = run_chapter(standin, Path(tmp) / "chapter", gpus,
                                                    variant, img_size, device)
                print(json.dumps(record[part])[:2000], flush=True)
            write_json(path, record)
    return path


def paper_cost_rows(record: dict, jobs: list[Job]) -> tuple[list[str], list[list[object]]]:
    """GPU-hours of each fine-tuning chapter of the paper profile on the checked device:
    runs x updates x the measured seconds per update of the chapter's (variant, size),
    evaluation not included. Rows for chapters whose size the record did not measure say so.
    """
    from mixer_lib.preflight import run_needs
    from mixer_lib.recipes import preset_for

    measured = {(r["variant"], r["img_size"]): r for r in record.get("sizes", [])}
    header = ["chapter", "runs", "updates per run", "seconds per update",
              "GPU-hours (one GPU)"]
    rows: list[list[object]] = []
    total = 0.0
    for job in jobs:
        needs = run_needs(job)
        if needs is None:
            continue
        preset = preset_for(job.parameters["dataset"])
        steps = job.parameters.get("steps") or (preset.steps if preset else 1000)
        row = measured.get((needs.variant, needs.img_size))
        if row is None:
            rows.append([needs.chapter, needs.runs, steps, "not measured", "not measured"])
            continue
        hours = needs.runs * steps * row["seconds_per_update"] / 3600
        total += hours
        rows.append([needs.chapter, needs.runs, steps, f"{row['seconds_per_update']:.3f}",
                     f"{hours:.1f}"])
    rows.append(["all fine-tuning chapters", "", "", "", f"{total:.1f}"])
    return header, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m mixer_lib.gpucheck",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--updates", type=int, default=3, help="timed updates per size")
    parser.add_argument("--tiny", action="store_true",
                        help="Mixer-T/4 at 32 px instead of the paper's sizes (CPU test)")
    parser.add_argument("--parts", default="sizes,torchrun,chapter")
    parser.add_argument("--gpus", type=int, default=None,
                        help="processes for torchrun (default: every GPU here)")
    parser.add_argument("--out-dir", default="results")
    args = parser.parse_args(argv)
    parts = tuple(p for p in args.parts.split(",") if p)
    unknown = set(parts) - {"sizes", "torchrun", "chapter"}
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}")
    path = check(TINY_SIZES if args.tiny else SIZES, args.updates, args.device,
                 Path(args.out_dir), parts, args.gpus)
    record = json.loads(path.read_text())
    failed = [p for p in ("torchrun", "chapter") if record[p].get("ok") is False]
    print(f"record: {path}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())


def paper_cost_html(results_dir: str | Path = "results") -> str:
    """Every recorded GPU check (``results/gpu-check-*.json``) as the paper profile's cost:
    one table per record with its device, torch, commit and date; a paragraph saying none is
    recorded otherwise."""
    from mixer_lib.profiles import jobs_for
    from mixer_lib.records import html_table

    checks = sorted(Path(results_dir).glob("gpu-check-*.json"))
    if not checks:
        return ("<p>No GPU check has been recorded in this commit: "
                "results/gpu-check-&lt;device&gt;.json is written by scripts/gpu-check.sh on a "
                "GPU machine, and this table is computed from it. No GPU time has been measured "
                "for the paper profile yet.</p>")
    out = []
    for path in checks:
        record = json.loads(path.read_text())
        env = record["environment"]
        out.append(f"<p>On {env['device']} ({record['gpus']} GPU), torch {env['torch']}, "
                   f"commit {env['git_commit']}, {env['date']} (<code>{path}</code>):</p>"
                   + html_table(*paper_cost_rows(record, jobs_for("paper"))))
    return "".join(out)
