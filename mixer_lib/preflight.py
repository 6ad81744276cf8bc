"""Preflight: is everything a profile needs here, before any GPU time is spent?

``python -m mixer_lib.preflight --profile paper [--gpus N]`` (also the first step of
``make book PROFILE=paper``) checks the GPUs and their driver against the torch build, every
dataset in the on-disk format its loader reads (or that ``--download`` can fetch it),
ImageNet's class folders and the validation file names ReaL needs, the released checkpoints
(cached, or reachable), free disk for the runs' checkpoints, ``/dev/shm`` for the loader
workers, and each run's memory at its batch, resolution and precision (the micro-batches and
checkpointing it will use, :mod:`mixer_lib.memory`). One table, one line per item: ready, or
not ready with its fix. Anything not ready: exit status 2.

The book runner uses the same checks per chapter (:func:`chapter_checks`): a chapter whose
data is missing is not run, and its page says what is missing and how to get it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from mixer_lib.checkpoints import WEIGHTS
from mixer_lib.driver import driver_verdict, driver_version
from mixer_lib.flops import analytic_params
from mixer_lib.memory import GiB, MemoryPlan, plan
from mixer_lib.model import get_config
from mixer_lib.profiles import PAPER, PROFILE_NAMES, Job, jobs_for
from mixer_lib.readiness import (
    DOWNLOAD,
    NOT_READY,
    READY,
    Check,
    checkpoint_check,
    dataset_check,
    real_labels_check,
)
from mixer_lib.recipes import RECIPES, preset_for

ASSUMED_GPU_GIB = 80.0  # an H100 80GB, when planning on a machine without a GPU
LOADER_PREFETCH = 4  # batches in flight per worker (data.loader_kwargs)
RUNS = Path(__file__).resolve().parents[1] / "runs"  # where the book's chapters write runs


def driver_check(torch_cuda: str | None, driver: str | None) -> Check | None:
    """The driver line of the table (None when there is nothing to compare)."""
    verdict = driver_verdict(torch_cuda, driver)
    if verdict is None:
        return None
    return Check("NVIDIA driver", READY if verdict.ok else NOT_READY, verdict.detail,
                 verdict.fix)


def gpu_checks(gpus: int) -> tuple[list[Check], float | None]:
    """Count, names and memory of the GPUs, the driver; and the smallest free memory in
    bytes (None without GPUs)."""
    import torch

    driver = driver_version()
    checks = [c for c in [driver_check(torch.version.cuda, driver)] if c]
    if not torch.cuda.is_available():
        why = ("torch is a CPU-only build" if torch.version.cuda is None
               else "no CUDA GPU visible" + (f" (driver {driver})" if driver else
                                             " (no NVIDIA driver: nvidia-smi not found)"))
        checks.insert(0, Check(f"GPUs ({gpus} wanted)", NOT_READY, why,
                               "run on a machine with NVIDIA GPUs (check CUDA_VISIBLE_DEVICES);"
                               " on a CPU, `make book PROFILE=paper-dryrun` runs the same code "
                               "on stand-ins"))
        return checks, None
    count = torch.cuda.device_count()
    free = []
    names = []
    for i in range(min(count, gpus)):
        f, total = torch.cuda.mem_get_info(i)
        free.append(f)
        names.append(f"{torch.cuda.get_device_name(i)} ({f / GiB:.0f} of {total / GiB:.0f} "
                     f"GiB free)")
    status = READY if count >= gpus else NOT_READY
    checks.insert(0, Check(f"GPUs ({gpus} wanted)", status,
                           f"{count} visible: " + "; ".join(names),
                           "" if status == READY else
                           f"use --gpus {count} (GPUS={count}) or a machine with {gpus}"))
    return checks, float(min(free)) if free else None


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class RunNeeds:
    """What one fine-tuning chapter's runs need of the machine."""

    chapter: str
    variant: str
    img_size: int
    batch_size: int
    runs: int  # fine-tunings it runs (grid + repeats under the protocol)
    precision: str
    optimizer: str
    num_workers: int


def run_needs(job: Job) -> RunNeeds | None:
    """The fine-tuning runs of a chapter, or None for chapters that train nothing big."""
    p = job.parameters
    if job.notebook != "finetune":
        return None
    recipe = RECIPES[p.get("recipe", "finetune")]
    preset = preset_for(p["dataset"])
    grid = len(p.get("grid") or (preset.lr_grid if preset else (0,)))
    runs = grid + int(p.get("repeats", 3)) if p.get("protocol") else 1
    return RunNeeds(job.output, p["variant"], int(p["img_size"]), int(p["batch_size"]), runs,
                    "bf16" if p.get("device") == "cuda" else "fp32", recipe.optimizer,
                    min(8, os.cpu_count() or 1))


def memory_plan(needs: RunNeeds, gpus: int, budget: float) -> MemoryPlan:
    return plan(needs.variant, needs.img_size, needs.batch_size, int(budget), needs.precision,
                gpus, needs.optimizer)


def memory_check(needs: RunNeeds, chosen: MemoryPlan, assumed: bool) -> Check:
    """The memory line of a fine-tuning chapter, from its plan."""
    where = (f"assumed {chosen.budget_bytes / GiB:.0f} GiB per GPU" if assumed
             else "free GPU memory")
    if chosen.fits:
        return Check(f"memory: {needs.chapter}", READY, f"{chosen.describe()} ({where})")
    return Check(f"memory: {needs.chapter}", NOT_READY, f"{chosen.describe()} ({where})",
                 "more GPUs (--gpus), GPUs with more memory, or a smaller img_size")


def disk_check(needs: list[RunNeeds], runs_dir: Path, pending_download_bytes: int) -> Check:
    """Finished runs keep their weights (4 bytes a parameter); the run in progress keeps two
    checkpoints with the optimiser state."""
    total = pending_download_bytes
    for n in needs:
        params = analytic_params(get_config(n.variant, img_size=n.img_size))
        state = 4 * params * (3 if n.optimizer == "adamw" else 2)
        total += n.runs * 4 * params + 2 * state
    probe = runs_dir
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    status = READY if free >= total else NOT_READY
    return Check("disk for runs and downloads", status,
                 f"about {total / GiB:.1f} GiB needed, {free / GiB:.1f} GiB free at {probe}",
                 "" if status == READY else "free disk space, or put runs/ on a larger disk "
                 "(a symbolic link)")


def shm_check(planned: list[tuple[RunNeeds, MemoryPlan]], gpus: int) -> Check | None:
    """Loader workers hand batches over in shared memory: workers x prefetch x micro-batch
    (of each chapter's plan) x processes."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not planned:
        return None
    worst = max(n.num_workers * LOADER_PREFETCH * chosen.micro_batch * 3 * n.img_size**2 * 4
                for n, chosen in planned) * gpus
    free = shutil.disk_usage(shm).free
    status = READY if free >= worst else NOT_READY
    return Check("/dev/shm for loader workers", status,
                 f"about {worst / GiB:.1f} GiB in flight, {free / GiB:.1f} GiB free",
                 "" if status == READY else
                 f"a larger /dev/shm (docker: --shm-size={int(worst / GiB) + 2}g) or fewer "
                 f"loader workers (num_workers)")


# ----------------------------------------------------------------------------- chapters


def chapter_checks(job: Job, root: str | os.PathLike | None, download: bool | None = None,
                   cache: Path | None = None) -> list[Check]:
    """What ``job`` reads that may be missing: its dataset, released checkpoints, ReaL labels,
    a run checkpoint made by an earlier chapter."""
    p = job.parameters
    checks: list[Check] = []
    fetch = p.get("download", True) if download is None else download
    # the weights chapter reads images only to classify them with a released checkpoint
    reads_data = job.notebook in ("finetune", "permutation") or (
        job.notebook == "weights" and p.get("weights", "none") != "none")
    if reads_data and p.get("dataset"):
        checks += dataset_check(p["dataset"], root, bool(fetch))
    if job.notebook == "finetune" and p.get("weights") in WEIGHTS:
        checks.append(checkpoint_check(p["variant"], p["weights"], cache))
        if p["dataset"] == "imagenet1k":
            checks.append(real_labels_check(cache))
    if job.notebook == "weights" and p.get("weights", "none") != "none":
        variant = p.get("variant", "Mixer-B/16")
        checks.append(checkpoint_check(variant, p["weights"], cache))
        checks.append(checkpoint_check(variant, p.get("classify_weights", "imagenet1k"),
                                       cache))
    if job.notebook == "token_mixing":
        ckpt = p.get("checkpoint", "")
        if ckpt in WEIGHTS:
            checks.append(checkpoint_check(p.get("variant", "Mixer-B/16"), ckpt, cache))
        elif not Path(ckpt).is_file():
            checks.append(Check(f"run checkpoint {ckpt}", NOT_READY,
                                "written by the fine-tuning chapter, which did not run",
                                "give the fine-tuning chapter its data (see its page)"))
    return checks


def profile_checks(profile: str, gpus: int = 1, root: str | os.PathLike | None = None,
                   download: bool = True, gpu_memory_gib: float | None = None,
                   jobs: list[Job] | None = None) -> tuple[list[Check], list[MemoryPlan]]:
    """Every check of ``profile`` (checks run side by side; each network probe has a 5 s
    limit), and the memory plan of each fine-tuning chapter."""
    jobs = jobs or jobs_for(profile, gpus)
    needs = [n for n in (run_needs(j) for j in jobs) if n is not None]
    uses_gpu = any(j.parameters.get("device") == "cuda" for j in jobs)
    checks: list[Check] = []
    budget: float | None = None
    if uses_gpu:
        gpu, budget = gpu_checks(gpus)
        checks += gpu
    assumed = budget is None
    if assumed:
        budget = (gpu_memory_gib or ASSUMED_GPU_GIB) * GiB
    elif gpu_memory_gib:
        budget, assumed = gpu_memory_gib * GiB, True
    with ThreadPoolExecutor(8) as pool:
        per_job = list(pool.map(lambda j: chapter_checks(j, root, download), jobs))
    seen = set()
    for job_checks in per_job:
        for c in job_checks:
            if c.item not in seen:
                seen.add(c.item)
                checks.append(c)
    plans = [memory_plan(n, gpus, budget) for n in needs] if uses_gpu else []
    if uses_gpu:
        checks += [memory_check(n, chosen, assumed) for n, chosen in zip(needs, plans,
                                                                          strict=True)]
        pending = sum(350 * 2**20 for c in checks if c.status == DOWNLOAD)
        checks.append(disk_check(needs, RUNS, pending))
        shm = shm_check(list(zip(needs, plans, strict=True)), gpus)
        if shm:
            checks.append(shm)
    return checks, plans


def table(checks: list[Check]) -> str:
    """The checks as a plain-text table: item, status, detail, fix."""
    rows = [("item", "status", "detail / fix")]
    for c in checks:
        rows.append((c.item, c.status, c.detail))
        if c.fix:
            rows.append(("", "", "fix: " + c.fix))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]}" for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m mixer_lib.preflight",
        description="Check that a profile's GPUs, data, checkpoints, disk and memory are "
                    "ready before any training; exit status 2 when something is not.")
    parser.add_argument("--profile", default=PAPER, choices=PROFILE_NAMES)
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per run (torchrun)")
    parser.add_argument("--data-root", default=None, help="default $MIXER_DATA_ROOT or ./data")
    parser.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                        help="datasets torchvision can fetch count as ready when reachable")
    parser.add_argument("--gpu-memory", type=float, default=None,
                        help=f"plan for this many GiB per GPU (default: the free memory of "
                             f"the GPUs here; {ASSUMED_GPU_GIB:.0f} without one)")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    args = parser.parse_args(argv)
    if args.gpus < 1:
        parser.error(f"--gpus must be >= 1; got {args.gpus}")
    checks, plans = profile_checks(args.profile, args.gpus, args.data_root, args.download,
                                   args.gpu_memory)
    if args.json:
        print(json.dumps({"checks": [asdict(c) | {"ok": c.ok} for c in checks],
                          "plans": [p.as_dict() for p in plans]}, indent=2))
    else:
        print(f"preflight of the {args.profile} profile ({args.gpus} GPU per run):")
        print(table(checks))
    missing = [c for c in checks if not c.ok]
    if missing:
        print(f"\n{len(missing)} item(s) not ready; nothing was run.", file=sys.stderr)
        return 2
    print("\nready.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
