"""The study: the paper's claims tested at a scale a 2-core CPU can train (about 6 hours).

A miniature of the paper's upstream -> downstream protocol on the real CIFAR-10 JPEG copy,
32 px: pre-train on classes 0-4, fine-tune on classes 5-9 (E1), at 64 px (E2); input
permutations (E3); the published reproduction's deviations from the recipe, one at a time and
together (E6). Each run is an ordinary resumable run folder under ``runs/study/<name>``; when
it finishes its result record is copied to ``results/study/<name>.json`` (config, device,
commit, date), which is committed. The book renders those records; a record whose config no
longer matches the code's definition of its run is reported stale, never silently used.

    python -m mixer_lib.study status                 # done / stale / missing, per run
    python -m mixer_lib.study run --only e1-up-mixer # run (or resume) some or all runs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixer_lib import scale
from mixer_lib.config import ConfigError, RunConfig, experiment

REPO = Path(__file__).resolve().parents[1]
RUNS = "runs/study"
RECORDS = REPO / "results" / "study"
SEEDS = (0, 1)

# upstream: classes 0-4 (airplane, automobile, bird, cat, deer); downstream: 5-9 (dog, frog,
# horse, ship, truck). 4,000 updates of 128 = 512,000 images seen upstream.
# Every run computes in float32 on every device (no bf16 autocast, no TF32 on a GPU), so records
# made on a CPU and on a GPU differ only by summation order.
UPSTREAM = dict(dataset="cifar10-jpeg", recipe="scratch", img_size=32, steps=4000,
                precision="fp32",
                batch_size=128, lr=2e-3, classes="0-4", eval_every=1000,
                checkpoint_every=250, log_every=50)
# the paper's fine-tuning recipe (SGD 0.9, batch 512, cosine after warm-up, clip 1, no weight
# decay, new zero head) for 200 updates of 512 = 102,400 images.
FINETUNE = dict(dataset="cifar10-jpeg", recipe="finetune", img_size=32, steps=200,
                precision="fp32",
                warmup_steps=20, batch_size=512, lr=0.03, classes="5-9",
                eval_every=50, checkpoint_every=50, log_every=10)
# from scratch on classes 5-9 with the same budget of images and updates
SCRATCH = dict(FINETUNE, recipe="scratch", lr=2e-3, warmup_steps=20)
# permutations: all ten classes from scratch, 800 updates of 128 = 102,400 images
PERMUTE = dict(dataset="cifar10-jpeg", recipe="scratch", img_size=32, steps=800,
               precision="fp32",
               batch_size=128, lr=2e-3, eval_every=400, checkpoint_every=200, log_every=50,
               permutation_patch=4)
# the published reproduction's deviations (its public code), each as RunConfig changes
DEVIATIONS: dict[str, dict[str, Any]] = {
    "batch64": dict(batch_size=64, accum_steps=1),  # lr, steps, warm-up kept (for 512)
    "no-shuffle": dict(data_order="fixed"),
    "no-flip": dict(flip=False),
    "exact-gelu": dict(gelu="exact"),
    "scheduler-first": dict(lr_lead=1),
    "select-on-test": dict(report="best", eval_every=10),
    "eval-resize": dict(eval_crop="resize"),
}
DEVIATIONS["all"] = {k: v for d in DEVIATIONS.values() for k, v in d.items()}
# the scale study (mixer_lib.scale): 600 updates of 128 = 76,800 images whatever the subset's
# size, so 500 images are seen 154 times and 10,000 7.7 times (the paper: 233 and 7 epochs)
SCALE = dict(UPSTREAM, steps=600, eval_every=300, checkpoint_every=100)
PROBE_CLASSES = "5-9"
PROBE = dict(shots=(5, 10), draws=5)


@dataclass(frozen=True)
class StudyRun:
    """One run of the study: its name (folder and record name), experiment, config."""

    name: str
    experiment: str
    config: dict[str, Any]
    needs: tuple[str, ...] = ()

    def run_config(self, data_root: str | None = None, num_workers: int | None = None,
                   device: str = "cpu") -> RunConfig:
        return RunConfig(**self.config, data_root=data_root, num_workers=num_workers,
                         device=device)


def _ckpt(name: str) -> str:
    return f"{RUNS}/{name}/checkpoint.pt"


def study_runs() -> list[StudyRun]:
    """Every run of the study, upstream runs first."""
    runs = [StudyRun("e1-up-mixer", "E1", dict(UPSTREAM, variant="Mixer-T/4")),
            StudyRun("e1-up-resnet", "E1", dict(UPSTREAM, variant="ResNet-S"))]
    for seed in SEEDS:
        for model, up in (("mixer", "Mixer-T/4"), ("resnet", "ResNet-S")):
            runs.append(StudyRun(f"e1-ft-{model}-s{seed}", "E1",
                                 dict(FINETUNE, variant=up, seed=seed,
                                      weights=_ckpt(f"e1-up-{model}")), (f"e1-up-{model}",)))
            runs.append(StudyRun(f"e1-scratch-{model}-s{seed}", "E1",
                                 dict(SCRATCH, variant=up, seed=seed)))
    for seed in SEEDS:
        e2 = dict(FINETUNE, variant="Mixer-T/4", seed=seed, steps=100, warmup_steps=10,
                  weights=_ckpt("e1-up-mixer"))
        runs += [StudyRun(f"e2-ft32-s{seed}", "E2", e2, ("e1-up-mixer",)),
                 StudyRun(f"e2-ft64-blockdiag-s{seed}", "E2", dict(e2, img_size=64),
                          ("e1-up-mixer",)),
                 StudyRun(f"e2-ft64-random-s{seed}", "E2",
                          dict(e2, img_size=64, token_init="random"), ("e1-up-mixer",))]
    for seed in SEEDS:
        for model, variant in (("mixer", "Mixer-T/4"), ("resnet", "ResNet-S")):
            for kind in ("none", "patch_pixel", "global"):
                runs.append(StudyRun(f"e3-{model}-{kind}-s{seed}", "E3",
                                     dict(PERMUTE, variant=variant, permutation=kind,
                                          seed=seed)))
    for seed in SEEDS:
        for dev, change in DEVIATIONS.items():
            cfg = dict(FINETUNE, variant="Mixer-T/4", seed=seed,
                       weights=_ckpt("e1-up-mixer"), **change)
            runs.append(StudyRun(f"e6-{dev}-s{seed}", "E6", cfg, ("e1-up-mixer",)))
    return runs + scale_runs()


def scale_runs() -> list[StudyRun]:
    """E7, E8 and E9 (:mod:`mixer_lib.scale`); every seed's runs before the next seed's, so a
    partial study has whole comparisons."""
    runs = []
    for seed in SEEDS:
        for size in scale.SIZES:
            runs += [StudyRun(scale.run_name(m, size, seed), "E7",
                              dict(SCALE, variant=v, train_limit=size, seed=seed))
                     for m, v in scale.DATA_MODELS.items()]
        small, large = scale.SIZES[0], scale.SIZES[-1]
        runs.append(StudyRun(scale.run_name(scale.REG_MODEL, small, seed), "E9",
                             dict(SCALE, variant="Mixer-T/4", train_limit=small, seed=seed,
                                  **scale.REGULARISED)))
        runs += [StudyRun(scale.run_name(m, size, seed), "E8",
                          dict(SCALE, variant=v, train_limit=size, seed=seed))
                 for size in (small, large) for m, v in scale.WIDTH_MODELS.items()
                 if m not in scale.DATA_MODELS]
    return runs


def record_path(name: str) -> Path:
    return RECORDS / f"{name}.json"


def status(run: StudyRun) -> str:
    """``done`` (a committed record of this run's current config), ``stale`` (a record of
    another config), or ``missing``."""
    path = record_path(run.name)
    if not path.exists():
        return "missing"
    record = json.loads(path.read_text())
    return "done" if experiment(record["config"]) == experiment(run.run_config()) else "stale"


def load_records() -> dict[str, dict]:
    """Committed records of the current study definition, by run name; stale ones are left
    out (see :func:`status`)."""
    return {r.name: json.loads(record_path(r.name).read_text()) for r in study_runs()
            if status(r) == "done"}


REFERENCE = REPO / "results" / "study-cpu"


def reference_records() -> dict[str, dict]:
    """Records of study runs made earlier on another device (``results/study-cpu``), by run
    name, where they compute what the current definition does: the same experiment except
    ``precision``, which was ``auto`` then (float32 on a CPU, what ``fp32`` now names)."""
    out = {}
    defs = {r.name: r for r in study_runs()}
    for path in sorted(REFERENCE.glob("e*.json")):
        record = json.loads(path.read_text())
        run = defs.get(record.get("study", {}).get("name"))
        if run is None:
            continue
        mine = experiment(run.run_config())
        theirs = experiment(record["config"])
        cpu_auto = record["config"].get("precision") == "auto" and \
            record["environment"]["device"].startswith("cpu")
        if cpu_auto:
            theirs["precision"] = "fp32"
        if theirs == mine:
            out[run.name] = record
    return out


def current_ledger(protocol_dirs: tuple[str, ...] = ()) -> list[dict]:
    """The claims ledger (:func:`mixer_lib.claims.ledger`) from the committed study records
    and throughput records, and the protocol records under ``protocol_dirs`` (the paper
    profile's runs): what ``ledger`` writes to ``claims.json`` and the Claims chapter shows."""
    from mixer_lib.claims import ledger, table1_agreement
    from mixer_lib.records import collect_protocols
    from mixer_lib.throughputs import throughput_benchmarks

    return ledger(load_records(), throughput_benchmarks(), collect_protocols(*protocol_dirs),
                  table1_agreement())


def execute(run: StudyRun, data_root: str | None, num_workers: int | None,
            progress: bool = True, device: str = "cpu") -> dict:
    """Run (or resume, or reuse) ``run`` and copy its result record to ``results/study``."""
    from mixer_lib.provenance import write_json
    from mixer_lib.train import run_or_resume

    cfg = run.run_config(data_root, num_workers, device)
    result = run_or_resume(cfg, REPO / RUNS / run.name, progress=progress)
    record = {k: v for k, v in result.items() if k not in ("source",)}
    record["study"] = {"name": run.name, "experiment": run.experiment}
    folder = REPO / RUNS / run.name
    if cfg.variant.startswith("Mixer-") and run.experiment not in PROBED:  # E4: local units?
        record["token_mixing"] = token_mixing_of(cfg, folder, len(result["class_names"]))
    if run.experiment in PROBED:
        record["fewshot"] = probe_of(cfg, folder, len(result["class_names"]))
    write_json(record_path(run.name), record)
    return record


PROBED = ("E7", "E8", "E9")  # experiments whose records carry the few-shot probe


def run_model(cfg: RunConfig, folder: Path, num_classes: int):
    """The model of a finished run, from its ``checkpoint.pt``, on the CPU."""
    import torch

    from mixer_lib.baselines import BASELINES
    from mixer_lib.model import create_model

    state = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)
    if cfg.variant in BASELINES:
        model = BASELINES[cfg.variant](num_classes, cfg.img_size)
    else:
        tokens = state["model"]["blocks.0.mlp_tokens.fc1.weight"].shape[0]
        model = create_model(cfg.variant, num_classes=num_classes, img_size=cfg.img_size,
                             tokens_mlp_dim=tokens)
    model.load_state_dict(state["model"])
    return model


def probe_of(cfg: RunConfig, folder: Path, num_classes: int) -> dict:
    """The few-shot probe (:func:`mixer_lib.fewshot.transfer_probe`) of a run's frozen
    features on the held-out classes :data:`PROBE_CLASSES`."""
    import dataclasses

    from mixer_lib.config import parse_classes
    from mixer_lib.fewshot import transfer_probe
    from mixer_lib.runtime import data_config, pick_device

    device = pick_device(cfg.device)
    data = dataclasses.replace(data_config(cfg), classes=parse_classes(PROBE_CLASSES),
                               randaugment=None, permutation="none")
    probe = transfer_probe(run_model(cfg, folder, num_classes).to(device), data,
                           device=device, **PROBE)
    return {"classes": PROBE_CLASSES, **probe}


def token_mixing_of(cfg: RunConfig, folder: Path, num_classes: int) -> dict:
    """Token-mixing statistics (:func:`mixer_lib.analysis.token_mixing_stats`) of a run."""
    from mixer_lib.analysis import token_mixing_stats

    model = run_model(cfg, folder, num_classes)
    stats = token_mixing_stats(model)
    # the first and last blocks' token-mixing weights (D_S x S), so the book can draw the
    # units of a run whose checkpoint is not committed (paper Figure 5)
    stats["weights"] = {str(b): [[round(float(v), 5) for v in row] for row in
                                 model.blocks[b].mlp_tokens.fc1.weight.detach()]
                        for b in (0, len(model.blocks) - 1)}
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixer_lib.study",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="list each run: done, stale or missing")
    sub.add_parser("ledger", help="write results/study/claims.json and autopsy.json from "
                                  "the committed records")
    go = sub.add_parser("run", help="run, resume or reuse runs (all, or --only)")
    go.add_argument("--only", nargs="*", help="run names or experiments (E1, e3-mixer-...)")
    go.add_argument("--data-root", default=None)
    go.add_argument("--num-workers", type=int, default=None)
    go.add_argument("--no-progress", action="store_true")
    go.add_argument("--device", default="cpu",
                    help="cpu, cuda or cuda:N (how a run executes, not part of its identity)")
    go.add_argument("--jobs", type=int, default=1,
                    help="runs side by side (each after the runs it needs); e.g. 6 on one GPU "
                         "with --num-workers 2 on 16 cores")
    args = parser.parse_args(argv)
    if getattr(args, "data_root", None):  # relative to where the command was given
        args.data_root = str(Path(args.data_root).resolve())
    os.chdir(REPO)  # runs name their upstream checkpoints relative to the repository
    runs = study_runs()
    if args.command == "ledger":
        from mixer_lib.autopsy import autopsy
        from mixer_lib.provenance import write_json

        claims = current_ledger()
        write_json(RECORDS / "claims.json", claims)
        write_json(RECORDS / "autopsy.json", autopsy(load_records()))
        for c in claims:
            print(f"{c['verdict']:18s} {c['id']}: {c['evidence']}")
        return 0
    if args.command == "status":
        for r in runs:
            print(f"{status(r):8s} {r.experiment} {r.name}")
        return 0
    if args.jobs < 1:
        print(f"error: --jobs must be >= 1; got {args.jobs}", file=sys.stderr)
        return 2
    from mixer_lib.errors import USER_ERRORS
    from mixer_lib.runtime import pick_device
    from mixer_lib.train import RunInterrupted, TrainingDiverged

    try:  # a device that is not there fails here, before any run starts
        pick_device(args.device)
    except (ConfigError, RuntimeError) as err:
        print(f"error: --device {args.device}: {err}", file=sys.stderr)
        return 2
    wanted = [r for r in runs if not args.only or r.name in args.only
              or r.experiment in args.only]
    names = {r.name for r in runs}
    unknown = [o for o in args.only or [] if o not in names and
               o not in {r.experiment for r in runs}]
    if unknown:
        print(f"error: unknown study runs {unknown}; see `python -m mixer_lib.study status`",
              file=sys.stderr)
        return 2
    todo = [r for r in wanted if status(r) != "done"]
    coming = {r.name for r in todo}  # upstream runs come first in study_runs()
    for r in todo:
        for need in r.needs:
            if need not in coming and not (REPO / RUNS / need / "results.json").exists():
                print(f"error: {r.name} needs {need} first", file=sys.stderr)
                return 2
    for r in wanted:
        if r not in todo:
            _complete_record(r)
    if args.jobs > 1:
        return _run_parallel(todo, args)
    for r in todo:
        print(f"== {r.name} ({r.experiment})", flush=True)
        try:
            execute(r, args.data_root, args.num_workers, progress=not args.no_progress,
                    device=args.device)
        except RunInterrupted as err:  # SIGTERM / Ctrl-C: checkpointed; run again to resume
            print(str(err), file=sys.stderr)
            return 128 + err.signum
        except (*USER_ERRORS, TrainingDiverged) as err:
            print(f"error: {r.name}: {err}", file=sys.stderr)
            return 1
    return 0


def _complete_record(r: StudyRun) -> None:
    """Add E4 statistics to a done Mixer record made before they existed."""
    record = json.loads(record_path(r.name).read_text())
    folder = REPO / RUNS / r.name
    if r.config["variant"].startswith("Mixer-") and r.experiment not in PROBED \
            and "token_mixing" not in record \
            and (folder / "checkpoint.pt").exists():
        from mixer_lib.provenance import write_json

        record["token_mixing"] = token_mixing_of(r.run_config(), folder,
                                                 len(record["class_names"]))
        write_json(record_path(r.name), record)


def _run_parallel(todo: list[StudyRun], args: argparse.Namespace) -> int:
    """``--jobs N``: each run in its own process (``run --only NAME``), N at a time, each
    after the runs it needs; logs in ``runs/study/logs/``."""
    from mixer_lib.schedule import Job, run_jobs

    base = [sys.executable, "-m", "mixer_lib.study", "run", "--device", args.device,
            "--no-progress"]
    if args.data_root:
        base += ["--data-root", args.data_root]
    if args.num_workers is not None:
        base += ["--num-workers", str(args.num_workers)]
    # the runs share the cores: each main process gets its share of the threads
    threads = str(max(1, (os.cpu_count() or 1) // args.jobs))
    env = {} if "OMP_NUM_THREADS" in os.environ else {"OMP_NUM_THREADS": threads}
    jobs = [Job(r.name, [*base, "--only", r.name], REPO / RUNS / "logs" / f"{r.name}.log",
                r.needs, env) for r in todo]
    print(f"{len(jobs)} runs, {args.jobs} at a time on {args.device}", flush=True)
    outcomes, signum = run_jobs(jobs, args.jobs, echo=lambda m: print(m, flush=True))
    failed = [n for n, o in outcomes.items() if not o.ok]
    if failed:
        print(f"not finished: {', '.join(failed)} (run the same command again to resume)",
              file=sys.stderr)
    if signum:
        return 128 + signum
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
