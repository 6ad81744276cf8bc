"""The paper's fine-tuning protocol for one (variant, weights, dataset), end to end.

ViT App. B.1.1, as the Mixer paper uses it (Section 3.1, App. C, Table 2 caption):

1. sweep: fine-tune once per learning rate of the grid (Mixer App. C: 0.003, 0.01, 0.03,
   0.06) on the training split less its dev slice, scored on the dev slice;
2. choose the rate with the best dev top-1 (a tie goes to the smaller rate);
3. final runs: fine-tune on the whole training split with that rate, seeds 0..n-1, scored on
   the test split; report their mean and standard deviation (the paper: means of three).

Every run is an ordinary resumable run folder (``DIR/sweep/lr-0.01``, ``DIR/final/seed-0``);
running the command again reuses finished runs and resumes unfinished ones. ``DIR/protocol.json``
is rewritten after every run. ``--gpus N`` runs each fine-tuning under
``torchrun --nproc_per_node=N``.

Command line: ``python -m mixer_lib.protocol --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from mixer_lib.config import ConfigError, RunConfig, experiment
from mixer_lib.errors import USER_ERRORS, report
from mixer_lib.provenance import write_json
from mixer_lib.recipes import PAPER_LR_GRID, STANDIN_PREFIX
from mixer_lib.rundir import check_experiment

# RunConfig fields the protocol sets itself.
PROTOCOL_FIELDS = ("lr", "seed", "eval_split")


def sweep_config(base: RunConfig, lr: float) -> RunConfig:
    """Grid run: train less the dev slice, scored on the dev slice, seed 0."""
    return dataclasses.replace(base, lr=lr, eval_split="val", seed=0)


def final_config(base: RunConfig, lr: float, seed: int) -> RunConfig:
    """Final run: the whole training split, scored on the test split."""
    return dataclasses.replace(base, lr=lr, eval_split="test", seed=seed)


def choose_lr(dev_top1: dict[float, float]) -> float:
    """The learning rate with the best dev top-1; a tie goes to the smaller rate."""
    best = max(dev_top1.values())
    return min(lr for lr, top1 in dev_top1.items() if top1 == best)


def is_dry_run(cfg: RunConfig) -> bool:
    """Runs on the dry-run stand-ins (``standin:<name>``) never count as results."""
    return cfg.dataset.startswith(STANDIN_PREFIX)


def cli_arguments(cfg: RunConfig) -> list[str]:
    """``cfg`` as ``python -m mixer_lib.train`` options (None fields left to their default)."""
    args: list[str] = []
    for f in fields(RunConfig):
        value = getattr(cfg, f.name)
        flag = "--" + f.name.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, str(value)]
    return args


def torchrun_command(cfg: RunConfig, out: Path, gpus: int, torchrun_args: str = "",
                     progress: bool = True) -> list[str]:
    """The torchrun command line that runs (or resumes) ``cfg`` in ``out`` on ``gpus``
    processes. ``torchrun_args`` replaces ``--standalone`` (several nodes: rendezvous)."""
    launch = shlex.split(torchrun_args) if torchrun_args else ["--standalone"]
    return [sys.executable, "-m", "torch.distributed.run", *launch,
            f"--nproc_per_node={gpus}", "-m", "mixer_lib.train", "--out", str(out),
            "--resume", *cli_arguments(cfg), *([] if progress else ["--no-progress"])]


def run_one(cfg: RunConfig, out: Path, gpus: int = 1, torchrun_args: str = "",
            progress: bool = True) -> dict[str, Any]:
    """Finish one run (reuse, resume or start) in this process or under torchrun."""
    from mixer_lib.train import run_or_resume

    if gpus <= 1 and not torchrun_args:
        return run_or_resume(cfg, out, progress=progress)
    results = out / "results.json"
    if out.is_dir():
        check_experiment(out, cfg, "another --out")
        if results.exists() and experiment(json.loads(results.read_text())["config"]) == \
                experiment(cfg):
            return json.loads(results.read_text())
    command = torchrun_command(cfg, out, gpus, torchrun_args, progress)
    print("$ " + shlex.join(command), flush=True)
    done = subprocess.run(command)
    if done.returncode != 0:
        raise RuntimeError(f"the run in {out} failed under torchrun (exit status "
                           f"{done.returncode}); its output is above. Re-running the protocol "
                           f"resumes it.")
    return json.loads(results.read_text())


def summary(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def run_protocol(base: RunConfig, out: str | Path, grid: tuple[float, ...] = PAPER_LR_GRID,
                 repeats: int = 3, gpus: int = 1, torchrun_args: str = "",
                 progress: bool = True) -> dict[str, Any]:
    """Sweep, choose, final runs; writes and returns the ``protocol.json`` record."""
    out = Path(out)
    grid = tuple(sorted(float(g) for g in grid))
    if not grid or any(g <= 0 for g in grid):
        raise ConfigError(f"grid must be one or more learning rates > 0; got {list(grid)}")
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1; got {repeats}")
    if gpus < 1:
        raise ConfigError(f"gpus must be >= 1; got {gpus}")
    base = base.resolved()
    # every run's config is built and checked before the first one starts
    sweep = {lr: sweep_config(base, lr) for lr in grid}
    record: dict[str, Any] = {
        "protocol": "ViT App. B.1.1 / Mixer App. C", "dataset": base.dataset,
        "variant": base.variant, "weights": base.weights, "grid": list(grid),
        "repeats": repeats, "dry_run": is_dry_run(base), "dev_top1": {}, "chosen_lr": None,
        "test_top1": [], "test_top1_mean": None, "test_top1_std": None,
        "runs": {"sweep": {}, "final": []}, "config": asdict(base),
        "gpus": gpus, "environment": None,
    }
    path = out / "protocol.json"
    for lr, cfg in sweep.items():
        folder = out / "sweep" / f"lr-{lr:g}"
        result = run_one(cfg, folder, gpus, torchrun_args, progress)
        record["dev_top1"][f"{lr:g}"] = result["top1"]
        record["environment"] = result["environment"]
        record["runs"]["sweep"][f"{lr:g}"] = str(folder)
        write_json(path, record)
    chosen = choose_lr({float(k): v for k, v in record["dev_top1"].items()})
    record["chosen_lr"] = chosen
    extra: dict[str, list[float]] = {}  # the evaluators' scores (mixer_lib.evaluators)
    for seed in range(repeats):
        folder = out / "final" / f"seed-{seed}"
        result = run_one(final_config(base, chosen, seed), folder, gpus, torchrun_args,
                         progress)
        record["test_top1"].append(result["top1"])
        record["environment"] = result["environment"]
        record["runs"]["final"].append(str(folder))
        record["test_top1_mean"], record["test_top1_std"] = summary(record["test_top1"])
        for key, name in (("real_top1", "real_top1"), ("top1_resize", "test_top1_resize")):
            if key in result:  # e.g. real_top1, real_top1_mean, real_top1_std
                extra.setdefault(name, []).append(result[key])
                record[name] = extra[name]
                record[f"{name}_mean"], record[f"{name}_std"] = summary(extra[name])
        write_json(path, record)
    return record


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    from mixer_lib.options import add_run_options

    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m mixer_lib.protocol",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="folder of the protocol's runs and "
                                                     "protocol.json")
    parser.add_argument("--grid", default=",".join(f"{g:g}" for g in PAPER_LR_GRID),
                        help="comma-separated learning rates to sweep (Mixer App. C)")
    parser.add_argument("--repeats", default="3",
                        help="final runs on the whole training split, seeds 0..N-1")
    parser.add_argument("--gpus", default="1",
                        help="processes per run (torchrun --nproc_per_node)")
    parser.add_argument("--torchrun-args", default="",
                        help="torchrun options instead of --standalone, e.g. for several "
                             "nodes: '--nnodes=2 --node-rank=0 --rdzv-backend=c10d "
                             "--rdzv-endpoint=HOST:29500'")
    add_run_options(parser, skip=PROTOCOL_FIELDS)
    return parser


def positive_int(name: str, text: object) -> int:
    """``text`` (an option or notebook parameter) as an integer >= 1, or a ConfigError."""
    try:
        value = int(str(text))
    except ValueError as err:
        raise ConfigError(f"{name} must be an integer; got the text {text!r}") from err
    if value < 1:
        raise ConfigError(f"{name} must be >= 1; got {value}")
    return value


def parse_grid(grid: object) -> tuple[float, ...]:
    """A learning-rate grid from ``"0.01,0.03"``, a list of numbers, or None (the paper's)."""
    if grid is None:
        return PAPER_LR_GRID
    items = grid.split(",") if isinstance(grid, str) else list(grid)
    try:
        values = tuple(float(g) for g in items if str(g).strip())
    except (TypeError, ValueError) as err:
        raise ConfigError(f"grid must be comma-separated numbers like 0.01,0.03; got "
                          f"{grid!r}") from err
    if not values or any(not v > 0 for v in values):
        raise ConfigError(f"grid must be one or more learning rates > 0; got {grid!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    from mixer_lib.options import config_from_args

    args = build_parser().parse_args(argv)
    try:
        base = config_from_args(args)
        grid = parse_grid(args.grid)
        repeats = positive_int("repeats", args.repeats)
        gpus = positive_int("gpus", args.gpus)
        if args.resume or args.overwrite or args.from_previous:
            raise ConfigError("the protocol always reuses finished runs and resumes unfinished "
                              "ones; --resume/--overwrite/--from-previous are for single runs "
                              "(use another --out to start afresh)")
        record = run_protocol(base, args.out, grid, repeats, gpus, args.torchrun_args,
                              progress=not args.no_progress)
    except USER_ERRORS as err:
        return report(err)
    print(json.dumps({k: record[k] for k in ("dataset", "variant", "weights", "dev_top1",
                                              "chosen_lr", "test_top1", "test_top1_mean",
                                              "test_top1_std")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
