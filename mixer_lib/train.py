"""Training engine: the paper's fine-tuning recipe and a from-scratch (pre-training) recipe.

One :class:`~mixer_lib.config.RunConfig` defines a run; ``train(cfg, out_dir)`` runs it into a
run folder (:mod:`mixer_lib.rundir`: config, lock, checkpoints, metrics, result record).

* Resume: ``resume=True`` continues from the newest checkpoint and ends bit-identical to an
  uninterrupted run: data order and augmentation are functions of (seed, sample position),
  dropout/mixup randomness of (seed, update).
* Signals: SIGTERM and SIGINT (Ctrl-C, a pre-empted cluster job) finish the current update,
  write a checkpoint and stop with :class:`RunInterrupted`; resume continues from there.
* Several processes: under ``torchrun`` each rank trains on its share of every global batch
  (:mod:`mixer_lib.distributed`); rank 0 writes the run folder.

Command line: ``python -m mixer_lib.train --help``.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from mixer_lib import evaluators
from mixer_lib.config import (
    ConfigError,
    RunConfig,
    experiment,
)
from mixer_lib.data import build_split
from mixer_lib.device_decode import EncodedJpegs
from mixer_lib.distributed import RankShare, World, setup, teardown
from mixer_lib.errors import USER_ERRORS, report
from mixer_lib.evaluate import EvalResult, evaluate
from mixer_lib.memory import MemoryPlan
from mixer_lib.model import MODEL_FORM
from mixer_lib.optim import make_optimizer
from mixer_lib.options import add_run_options, config_from_args
from mixer_lib.provenance import environment
from mixer_lib.records import result_record
from mixer_lib.rundir import (
    RunExists,
    RunFolder,
    RunLock,
    check_experiment,
    checkpoint_step,
    move_aside,
    refuse_or_move_aside,
    stored_config,
)
from mixer_lib.runtime import (
    compute_dtype,
    data_config,
    execution_plan,
    pick_device,
)
from mixer_lib.sampling import EpochSampler, loader_kwargs, make_eval_loader
from mixer_lib.signals import StopSignals
from mixer_lib.start import build_model
from mixer_lib.step import ImageRate, update

__all__ = ["RunConfig", "RunInterrupted", "TrainingDiverged", "main", "run_or_resume",
           "train"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class RunInterrupted(RuntimeError):
    """SIGTERM/SIGINT stopped the run after a checkpoint was written; resume continues it."""

    def __init__(self, message: str, signum: int, step: int) -> None:
        super().__init__(message)
        self.signum, self.step = signum, step


def _prepare_folder(cfg: RunConfig, out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse or move aside before any work: another experiment needs ``overwrite``, the same
    one with a checkpoint or result needs ``resume``."""
    if not out.exists() or stored_config(out) is None:
        return
    if refuse_or_move_aside(out, cfg, overwrite, "overwrite=True (--overwrite)"):
        return
    if overwrite and not resume:
        moved = move_aside(out)
        print(f"moved the previous run aside to {moved}", file=sys.stderr)
        return
    if not resume and (checkpoint_step(out) is not None or (out / "results.json").exists()):
        raise RunExists(f"{out} already holds this run; pass resume=True (--resume) to "
                        f"continue it, overwrite=True (--overwrite) to move it aside and start "
                        f"again, or choose another output folder")


def train(cfg: RunConfig, out_dir: str | Path, *, resume: bool = False,
          overwrite: bool = False, from_previous: bool = False, stop_after: int | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Run ``cfg`` into the run folder ``out_dir``; returns the result record.

    ``resume``: continue the same experiment from its newest checkpoint (or start it).
    ``overwrite``: move an existing run aside (``<out>.replaced-<time>``) and start afresh.
    ``from_previous``: resume from ``checkpoint.prev.pt`` when ``checkpoint.pt`` is damaged.
    ``stop_after=k`` stops after update k as if the process had been killed there (for tests
    and for splitting long runs); the checkpoint of that step is written first.
    """
    cfg = cfg.resolved()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunExists(f"{out} exists and is not a folder; choose another output folder")
    world = setup(pick_device(cfg.device).type)
    try:
        device = pick_device(cfg.device, world)
        cfg, memory = execution_plan(cfg, device, world)
        try:
            if world.main:
                _prepare_folder(cfg, out, resume, overwrite)
            dcfg = data_config(cfg)
            # rank 0 first: a download or an archive extraction happens once, not per rank
            train_ds, eval_ds = world.main_first(
                lambda: (build_split(dcfg, "train"), build_split(dcfg, cfg.eval_split)),
                "preparing the data")
            if cfg.decode == "device":  # the workers hand over encoded files
                train_ds = EncodedJpegs(train_ds)
            elif device.type != "cpu":  # uint8 pixels cross to the device, scaled there
                train_ds.hand_over_uint8()
            # what the extra scores need (ReaL's labels) is checked now, not after hours
            extra_evals = evaluators.prepare(cfg, eval_ds, progress) if world.main else []
        except Exception:
            world.agree(False)  # the other ranks stop too instead of waiting for this one
            raise
        if not world.agree(True):
            raise RuntimeError(f"another rank failed to prepare {out}; see its message")
        if world.main:
            with RunLock(out) as lock:
                if lock.took_over:
                    print(f"took over a stale lock of {out} ({lock.took_over})",
                          file=sys.stderr)
                check_experiment(out, cfg, "overwrite=True (--overwrite)")
                return _train(cfg, out, world, device, train_ds, eval_ds, from_previous,
                              stop_after, progress, extra_evals, memory)
        return _train(cfg, out, world, device, train_ds, eval_ds, from_previous, stop_after,
                      False, [], memory)
    finally:
        teardown(world)


def _train(cfg: RunConfig, out: Path, world: World, device: torch.device, train_ds, eval_ds,
           from_previous: bool, stop_after: int | None, progress: bool,
           extra_evals: list, memory: MemoryPlan | None = None) -> dict[str, Any]:
    """The run itself, in four sections: where it starts (folder, model, optimiser,
    checkpoint), its data, the train loop, and the finish (last evaluation, evaluators,
    result record)."""
    t0 = time.perf_counter()
    amp = compute_dtype(cfg, device)
    if device.type == "cuda" and amp is None:  # fp32 means fp32: no TF32 matmuls or convolutions
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    names = train_ds.classes

    # ---- Where the run starts: its folder, the model and optimiser, a checkpoint if any
    run = RunFolder(out, writer=world.main)
    env = environment(device) | {"world_size": world.size,
                                 "memory_plan": memory.as_dict() if memory else None,
                                 "model_form": MODEL_FORM, "compiled": cfg.compile,
                                 "loader_form": train_ds.fetch_form(),
                                 "loader_pixels": train_ds.pixels_form()}
    run.write_config(asdict(cfg), env)
    world.barrier()
    model, load_report = world.main_first(lambda: build_model(cfg, len(names)),
                                          "loading the weights")  # downloaded once
    model.to(device)
    optimizer = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum,
                               cfg.weight_decay)
    start, before = _restore(run, model, optimizer, from_previous)
    forward = _wrap(model, cfg, device, world)

    # ---- The data: each rank's share of every global batch, continuing at the checkpoint
    micro = cfg.batch_size // cfg.accum_steps
    if micro % world.size:
        raise ConfigError(f"batch_size {cfg.batch_size} / accum_steps {cfg.accum_steps} = "
                          f"{micro} is not divisible by the {world.size} processes")
    sampler = RankShare(EpochSampler(len(train_ds), cfg.seed, start=start * cfg.batch_size,
                                     total=cfg.steps * cfg.batch_size,
                                     fixed_order=cfg.data_order == "fixed"), micro, world)
    batches = iter(DataLoader(train_ds, batch_size=micro // world.size, sampler=sampler,
                              drop_last=False, collate_fn=getattr(train_ds, "collate", None),
                              **loader_kwargs(device, cfg.num_workers)))

    def evaluate_on(ds) -> EvalResult:
        return evaluate(model, make_eval_loader(ds, micro, device, cfg.num_workers), device,
                        len(names), amp)

    eval_loader = make_eval_loader(eval_ds, micro, device, cfg.num_workers)  # workers persist

    def run_eval(step: int) -> EvalResult | None:
        result = evaluate(model, eval_loader, device, len(names), amp) if world.main else None
        if result is not None:
            run.log({"step": step, "split": cfg.eval_split, **result.summary()})
        world.barrier()
        return result

    def save(step: int) -> None:  # a finished run keeps its weights only, no optimiser state
        run.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()
                  if step < cfg.steps else None, "step": step, "config": asdict(cfg),
                  "elapsed_s": before + time.perf_counter() - t0})

    # ---- The train loop: update; log; evaluate; checkpoint; stop cleanly on a signal
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress,
               desc=f"{cfg.variant} {cfg.dataset}", dynamic_ncols=True)
    rate = ImageRate()
    model.train()
    last_eval, done = None, start
    with StopSignals() as stop:
        for step in bar:
            try:
                stats = update(model, forward, optimizer, batches, cfg, step, len(names),
                               device, amp, world)
            except Exception:
                if stop.signum is None:
                    raise
                stats = None  # e.g. Ctrl-C also stopped the loader's workers
            if stats is None:
                save(done)
                raise _interrupted(stop.signum, done, out)
            if not math.isfinite(stats["loss"]):
                raise _diverged(stats, step, run)
            done = step + 1
            rate.add(stats["seen"] * world.size)
            if world.main and (done % cfg.log_every == 0 or done == cfg.steps):
                img_s = rate.take()
                run.log({"step": done, "loss": stats["loss"], "lr": stats["lr"],
                         "grad_norm": stats["grad_norm"], "img_per_s": img_s})
                bar.set_postfix(loss=f"{stats['loss']:.3f}", lr=f"{stats['lr']:.2e}",
                                img_s=f"{img_s:.0f}")
            if done % cfg.eval_every == 0 or done == cfg.steps:
                last_eval = run_eval(done)
                if last_eval is not None and progress:
                    bar.write(f"step {done}: {cfg.eval_split} top-1 {last_eval.top1:.2f}% "
                              f"top-5 {last_eval.top5:.2f}%")
            signum = stop.signum
            if world.size > 1:  # every rank stops at the same update
                signum = int(world.sum([float(signum or 0)])[0]) or None
            if done % cfg.checkpoint_every == 0 or done == cfg.steps or done == stop_after \
                    or signum:
                save(done)
            if signum and done < cfg.steps:
                bar.close()
                raise _interrupted(signum, done, out)
            if stop_after is not None and done >= stop_after and done < cfg.steps:
                bar.close()
                return {"stopped_at": done, "out_dir": str(out)}
    bar.close()

    # ---- Finish: the last evaluation, the evaluators' scores, the result record
    if start == cfg.steps:  # resumed at the very end: the loop did not evaluate
        last_eval = run_eval(done)
    if not world.main:
        return {"rank": world.rank, "out_dir": str(out)}
    extra = evaluators.score(extra_evals, evaluators.Finished(
        last_eval.predictions.tolist(), eval_ds, cfg, lambda ds: evaluate_on(ds).top1))
    if cfg.report == "best":  # selection on the evaluated split, from every logged evaluation
        best = max(run.evaluations(), key=lambda r: r["top1"])
        extra.update(top1=best["top1"], top1_final=last_eval.top1, best_step=best["step"])
    elapsed = time.perf_counter() - t0
    record = result_record(cfg, last_eval, names, len(train_ds), load_report, env, **extra,
                           wall_time_s=elapsed, wall_time_total_s=before + elapsed,
                           resumed_from=start or None,
                           params=sum(p.numel() for p in model.parameters()))
    run.write_result(record)
    return record


def _restore(run: RunFolder, model: nn.Module, optimizer: torch.optim.Optimizer,
             from_previous: bool) -> tuple[int, float]:
    """Load the newest checkpoint into ``model`` and ``optimizer`` (a finished run kept no
    optimiser state); keep the metrics up to it. Returns the update to continue from and the
    seconds the run's earlier processes took to reach it (0 for checkpoints that predate
    ``elapsed_s``)."""
    state = run.resume_state(use_previous=from_previous)
    start, before = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        if state["optimizer"] is not None:
            optimizer.load_state_dict(state["optimizer"])
        start, before = int(state["step"]), float(state.get("elapsed_s", 0.0))
    run.restart_metrics(start)
    return start, before


def _wrap(model: nn.Module, cfg: RunConfig, device: torch.device, world: World) -> nn.Module:
    """What computes the forward pass: the model, under DDP with several processes, compiled
    when ``cfg.compile``."""
    forward: nn.Module = model
    if world.size > 1:
        forward = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(forward) if cfg.compile else forward


def _diverged(stats: dict, step: int, run: RunFolder) -> TrainingDiverged:
    kept_step = run.checkpoint_step()
    kept = (f"the last good checkpoint {run.path / 'checkpoint.pt'} (step {kept_step}) is kept"
            if kept_step is not None else "no checkpoint had been written yet")
    return TrainingDiverged(
        f"loss became {stats['loss']} at update {step + 1} (lr={stats['lr']:.3g}); {kept}. "
        f"Lower the learning rate, keep gradient clipping on, or check the inputs.")


def _interrupted(signum: int | None, step: int, out: Path) -> RunInterrupted:
    name = signal.Signals(signum).name if signum else "a signal"
    return RunInterrupted(f"stopped by {name} after update {step}; checkpoint written to "
                          f"{out / 'checkpoint.pt'}. Continue with --resume (resume=True).",
                          signum or 0, step)


def run_or_resume(cfg: RunConfig, out_dir: str | Path, progress: bool = True,
                  overwrite: bool = False) -> dict[str, Any]:
    """Finish the run in ``out_dir`` (what the book's chapters call).

    A finished run of the same experiment is reused (even when the data root, workers or
    device differ); an unfinished one is resumed; another experiment is refused
    (:class:`~mixer_lib.rundir.RunExists` names the differing fields) unless ``overwrite``,
    which moves the old folder aside. Nothing is deleted.
    """
    out = Path(out_dir)
    if out.is_dir() and stored_config(out) is not None:
        refuse_or_move_aside(out, cfg, overwrite, "the parameter overwrite=True")
    results = out / "results.json"
    if results.exists():
        record = json.loads(results.read_text())
        if experiment(record["config"]) == experiment(cfg):
            return record
    return train(cfg, out, resume=True, progress=progress)


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m mixer_lib.train",
        description="Fine-tune or train an MLP-Mixer; writes config.json, metrics.jsonl, "
                    "checkpoint.pt and results.json into --out. Several processes: "
                    "torchrun --nproc_per_node=N -m mixer_lib.train ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder of the run")
    add_run_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        result = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite,
                       from_previous=args.from_previous, progress=not args.no_progress)
    except USER_ERRORS as err:
        return report(err)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except RunInterrupted as err:
        print(str(err), file=sys.stderr)
        return 128 + err.signum
    if "top1" in result:
        print(json.dumps({k: result[k] for k in ("dataset", "variant", "weights", "top1",
                                                  "top5", "steps", "wall_time_s")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

