"""Training engine: the paper's fine-tuning recipe and a from-scratch (pre-training) recipe.

One :class:`RunConfig` defines a run. ``train(cfg, out_dir)`` writes, in ``out_dir``:

* ``config.json``   the RunConfig and environment (written first);
* ``metrics.jsonl`` one JSON record per log/eval step;
* ``checkpoint.pt`` model + optimiser + step, replaced atomically every ``checkpoint_every``;
* ``results.json``  the result record the book reads (top-1/top-5, provenance).

``resume=True`` continues from ``checkpoint.pt`` and gives the same weights and metrics as an
uninterrupted run: data order and augmentation are functions of (seed, sample position),
dropout/mixup randomness of (seed, step).

Command line: ``python -m mixer_lib.train --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from mixer_lib.baselines import BASELINES
from mixer_lib.checkpoints import (
    WEIGHTS,
    checkpoint_info,
    download,
    load_npz,
)
from mixer_lib.data import (
    DATASETS,
    DataConfig,
    EpochSampler,
    build_split,
    class_names,
    loader_kwargs,
    make_eval_loader,
    spec_for,
)
from mixer_lib.evaluate import evaluate
from mixer_lib.model import create_model, get_config
from mixer_lib.optim import clip_grad_norm, lr_at, make_optimizer, mixup
from mixer_lib.permute import PERMUTATIONS
from mixer_lib.provenance import atomic_torch_save, environment, write_json

# Per-dataset fine-tuning defaults (ViT/Mixer papers' appendix and the vit_jax configs):
# (total steps, warm-up steps). Learning rates are swept over FINETUNE_LR_GRID.
FINETUNE_STEPS = {"imagenet1k": (20_000, 500), "cifar10": (10_000, 500),
                  "cifar100": (10_000, 500), "pets": (500, 100), "flowers102": (500, 100),
                  "cifar10-jpeg": (10_000, 500)}
FINETUNE_LR_GRID = (0.001, 0.003, 0.01, 0.03)
RECIPES = ("finetune", "scratch")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def _opt(help_text: str, default: Any = None, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help_text, **kw})


@dataclass
class RunConfig:
    """Everything that defines a run. ``None`` fields take the recipe's default."""

    dataset: str = _opt("dataset name (" + ", ".join(DATASETS) + ") or imagefolder:/path",
                        "cifar10-jpeg")
    variant: str = _opt("Mixer variant: Table 1 name (Mixer-B/16, ...), Mixer-T/4, or the "
                        "ResNet-S baseline", "Mixer-B/16")
    weights: str = _opt("random, a released pre-training (" + ", ".join(WEIGHTS)
                        + ") or a path to an official-layout .npz", "random")
    recipe: str = _opt("finetune (momentum SGD, cosine, no weight decay) or scratch "
                       "(AdamW, linear decay, weight decay, augmentation)", "finetune")
    img_size: int = _opt("training/eval resolution in pixels", 224)
    steps: int | None = _opt("optimiser updates (default: per-dataset fine-tuning steps, "
                             "or 1000 from scratch)")
    batch_size: int = _opt("effective batch size per update", 512)
    accum_steps: int = _opt("gradient-accumulation micro-steps per update (same effective "
                            "batch, less memory)", 1)
    lr: float | None = _opt("peak learning rate (default 0.03 fine-tuning, 1e-3 scratch)")
    warmup_steps: int | None = _opt("linear warm-up steps (default per dataset / 10%% of steps)")
    decay: str | None = _opt("cosine, linear or constant (default cosine fine-tuning, linear "
                             "scratch)")
    optimizer: str | None = _opt("sgd or adamw (default by recipe)")
    momentum: float = _opt("SGD momentum", 0.9)
    weight_decay: float | None = _opt("decoupled weight decay (default 0 fine-tuning, 0.05 "
                                      "scratch)")
    grad_clip: float = _opt("clip the global gradient norm to this (0 = off)", 1.0)
    mixup_alpha: float = _opt("mixup Beta(alpha, alpha); 0 = off", 0.0)
    randaugment: str | None = _opt("RandAugment 'num_ops,magnitude', e.g. 2,15; empty = off")
    drop_rate: float = _opt("dropout in MLPs and before the head", 0.0)
    drop_path_rate: float = _opt("stochastic depth rate of the last block", 0.0)
    gelu: str = _opt("tanh (official) or exact", "tanh")
    train_limit: int | None = _opt("use a class-balanced seeded subset of this many training "
                                   "images")
    eval_limit: int | None = _opt("use a class-balanced subset of this many eval images")
    eval_split: str = _opt("split evaluated during and after training: test or val", "test")
    eval_every: int = _opt("evaluate every N updates (and at the end)", 500)
    checkpoint_every: int = _opt("write checkpoint.pt every N updates (and at the end)", 500)
    log_every: int = _opt("write a metrics record every N updates", 10)
    seed: int = _opt("seed for init, data order, augmentation, dropout", 0)
    device: str = _opt("auto, cpu, cuda or cuda:N", "auto")
    precision: str = _opt("auto (bf16 autocast on GPU, fp32 on CPU), bf16 or fp32", "auto")
    compile: bool = _opt("wrap the model in torch.compile", False)
    num_workers: int | None = _opt("data-loader worker processes (default: 2 on CPU, up to 8 "
                                   "on GPU)")
    data_root: str | None = _opt("data root (default $MIXER_DATA_ROOT or ./data)")
    download: bool = _opt("let torchvision download datasets it can", False)
    permutation: str = _opt("fixed input shuffle of paper Section 3.4: none, patch_pixel, "
                            "global", "none")
    permutation_patch: int = _opt("patch size of the patch_pixel shuffle", 4)

    def __post_init__(self) -> None:
        spec_for(self.dataset)  # raises a clear error for unknown names
        if self.variant not in BASELINES:
            get_config(self.variant)
        checks = {"recipe": (self.recipe, RECIPES), "gelu": (self.gelu, ("tanh", "exact")),
                  "eval_split": (self.eval_split, ("test", "val")),
                  "precision": (self.precision, ("auto", "bf16", "fp32")),
                  "decay": (self.decay, (None, "cosine", "linear", "constant")),
                  "optimizer": (self.optimizer, (None, "sgd", "adamw")),
                  "permutation": (self.permutation, PERMUTATIONS)}
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise ValueError(f"unknown {name} {value!r}; choose one of {shown}")
        if not (self.weights == "random" or self.weights in WEIGHTS
                or self.weights.endswith(".npz")):
            raise ValueError(f"unknown weights {self.weights!r}; use random, one of "
                             f"{', '.join(WEIGHTS)} or a path to a .npz file")
        if self.device != "auto" and not (self.device == "cpu" or
                                          self.device.startswith("cuda")):
            raise ValueError(f"unknown device {self.device!r}; use auto, cpu, cuda or cuda:N")
        if self.batch_size % self.accum_steps:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by accum_steps "
                             f"{self.accum_steps}")
        if self.randaugment:
            _parse_randaugment(self.randaugment)

    def resolved(self) -> RunConfig:
        """A copy with every recipe default filled in (what is recorded with the run)."""
        ft = self.recipe == "finetune"
        steps, warmup = FINETUNE_STEPS.get(self.dataset, (1000, 100)) if ft else (1000, None)
        steps = self.steps if self.steps is not None else steps
        if self.warmup_steps is not None:
            warmup = self.warmup_steps
        elif warmup is None or self.steps is not None:  # scratch, or steps set by hand
            warmup = max(1, steps // 10)
        return dataclasses.replace(
            self, steps=steps, warmup_steps=min(warmup, steps),
            lr=self.lr if self.lr is not None else (0.03 if ft else 1e-3),
            decay=self.decay or ("cosine" if ft else "linear"),
            optimizer=self.optimizer or ("sgd" if ft else "adamw"),
            weight_decay=self.weight_decay if self.weight_decay is not None else
            (0.0 if ft else 0.05),
        )


def _parse_randaugment(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        n, m = (int(v) for v in text.split(","))
    except ValueError as err:
        raise ValueError(f"randaugment must be 'num_ops,magnitude' like 2,15; got {text!r}") \
            from err
    return n, m


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no GPU is available; use device=cpu")
    return device


def data_config(cfg: RunConfig) -> DataConfig:
    return DataConfig(dataset=cfg.dataset, root=cfg.data_root, img_size=cfg.img_size,
                      train_limit=cfg.train_limit, eval_limit=cfg.eval_limit, seed=cfg.seed,
                      randaugment=_parse_randaugment(cfg.randaugment), download=cfg.download,
                      permutation=cfg.permutation, permutation_patch=cfg.permutation_patch)


def build_model(cfg: RunConfig, num_classes: int) -> tuple[nn.Module, str]:
    """The model for ``cfg`` with its weights loaded; returns it and a load report."""
    torch.manual_seed(cfg.seed)
    if cfg.variant in BASELINES:
        if cfg.weights != "random":
            raise ValueError(f"{cfg.variant} is trained from scratch only (weights=random)")
        return BASELINES[cfg.variant](num_classes), "random initialisation (PyTorch defaults)"
    model = create_model(cfg.variant, num_classes=num_classes, img_size=cfg.img_size,
                         gelu=cfg.gelu, drop_rate=cfg.drop_rate,
                         drop_path_rate=cfg.drop_path_rate)
    if cfg.weights == "random":
        return model, "random initialisation (Flax defaults, zero head)"
    if cfg.weights in WEIGHTS:
        path = download(checkpoint_info(model.cfg.name, cfg.weights).name)
    else:
        path = Path(cfg.weights)
    return model, str(load_npz(model, path))


def _config_record(cfg: RunConfig) -> dict[str, Any]:
    """``cfg`` as it reads back from ``config.json`` (tuples become lists), for comparison."""
    return json.loads(json.dumps(asdict(cfg)))


def _step_seed(seed: int, step: int) -> int:
    return (seed * 7_919 + step * 104_729) % (2**31)


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Keep only metric records up to ``last_step`` (the resumed checkpoint's step)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= last_step]
    path.write_text("".join(line + "\n" for line in keep))


def train(cfg: RunConfig, out_dir: str | Path, *, resume: bool = False,
          stop_after: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run ``cfg`` and write its outputs to ``out_dir``; returns the result record.

    ``stop_after=k`` stops after update k as if the process had been killed there (for tests
    and for splitting long runs); the checkpoint of that step is written first.
    """
    cfg = cfg.resolved()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    amp = torch.bfloat16 if (cfg.precision == "bf16" or
                             (cfg.precision == "auto" and device.type == "cuda")) else None
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"
    config_path = out / "config.json"
    if config_path.exists() and not resume and ckpt_path.exists():
        raise FileExistsError(f"{out} already holds a run; pass resume=True (--resume) to "
                              f"continue it or choose another output folder")
    if resume and config_path.exists():
        previous = json.loads(config_path.read_text())["config"]
        if previous != _config_record(cfg):
            changed = sorted(k for k in previous if previous[k] != asdict(cfg).get(k))
            raise ValueError(f"cannot resume {out}: its config differs in {changed}")
    env = environment(device)
    write_json(config_path, {"config": asdict(cfg), "environment": env})

    dcfg = data_config(cfg)
    train_ds = build_split(dcfg, "train")
    eval_ds = build_split(dcfg, cfg.eval_split)
    names = class_names(train_ds.base)
    model, load_report = build_model(cfg, len(names))
    model.to(device)
    optimizer = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum,
                               cfg.weight_decay)
    start = 0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        _truncate_metrics(metrics_path, start)
    elif metrics_path.exists():
        metrics_path.unlink()
    forward = torch.compile(model) if cfg.compile else model

    micro = cfg.batch_size // cfg.accum_steps
    sampler = EpochSampler(len(train_ds), cfg.seed, start=start * cfg.batch_size,
                           total=cfg.steps * cfg.batch_size)
    kw = loader_kwargs(device, cfg.num_workers)
    loader = DataLoader(train_ds, batch_size=micro, sampler=sampler, drop_last=False, **kw)
    eval_loader = make_eval_loader(eval_ds, micro, device, cfg.num_workers)
    batches = iter(loader)

    def save(step: int) -> None:
        atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "step": step, "config": asdict(cfg)}, ckpt_path)

    def log(record: dict) -> None:
        with open(metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    t0 = time.perf_counter()
    seen, window_t, window_n = 0, time.perf_counter(), 0
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress,
               desc=f"{cfg.variant} {cfg.dataset}", dynamic_ncols=True)
    model.train()
    last_eval = None
    for step in bar:
        lr = lr_at(step, cfg.lr, cfg.steps, cfg.warmup_steps, cfg.decay)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(_step_seed(cfg.seed, step))
        mix_rng = np.random.default_rng([cfg.seed, step])
        optimizer.zero_grad(set_to_none=True)
        loss_total = 0.0
        for _ in range(cfg.accum_steps):
            x, y = next(batches)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                if cfg.mixup_alpha > 0:
                    x, target = mixup(x, y, len(names), cfg.mixup_alpha, mix_rng)
                    loss = nn.functional.cross_entropy(forward(x).float(), target)
                else:
                    loss = nn.functional.cross_entropy(forward(x).float(), y)
            (loss / cfg.accum_steps).backward()
            loss_total += float(loss.detach()) / cfg.accum_steps
            seen += y.numel()
            window_n += y.numel()
        if not math.isfinite(loss_total):
            kept = f"the last good checkpoint {ckpt_path} (step {_ckpt_step(ckpt_path)}) is kept" \
                if ckpt_path.exists() else "no checkpoint had been written yet"
            raise TrainingDiverged(
                f"loss became {loss_total} at update {step + 1} (lr={lr:.3g}); {kept}. Lower the "
                f"learning rate, keep gradient clipping on, or check the inputs.")
        grad_norm = clip_grad_norm(model.parameters(), cfg.grad_clip)
        optimizer.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            now = time.perf_counter()
            rate = window_n / max(now - window_t, 1e-9)
            window_t, window_n = now, 0
            log({"step": done, "loss": loss_total, "lr": lr, "grad_norm": grad_norm,
                 "img_per_s": rate})
            bar.set_postfix(loss=f"{loss_total:.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}")
        if done % cfg.eval_every == 0 or done == cfg.steps:
            last_eval = evaluate(model, eval_loader, device, len(names), amp)
            log({"step": done, "split": cfg.eval_split, **last_eval.summary()})
            bar.write(f"step {done}: {cfg.eval_split} top-1 {last_eval.top1:.2f}% "
                      f"top-5 {last_eval.top5:.2f}%")
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or done == stop_after:
            save(done)
        if stop_after is not None and done >= stop_after and done < cfg.steps:
            bar.close()
            return {"stopped_at": done, "out_dir": str(out)}
    bar.close()
    if last_eval is None:  # resumed at the very end
        last_eval = evaluate(model, eval_loader, device, len(names), amp)
    result = {
        "dataset": cfg.dataset, "variant": cfg.variant, "weights": cfg.weights,
        "recipe": cfg.recipe, "img_size": cfg.img_size, "steps": cfg.steps,
        "eval_split": cfg.eval_split, "top1": last_eval.top1, "top5": last_eval.top5,
        "eval_loss": last_eval.loss, "num_eval": last_eval.num_samples,
        "num_train": len(train_ds), "per_class": dict(zip(names, last_eval.per_class,
                                                          strict=True)),
        "confusion": last_eval.confusion.tolist(), "class_names": names,
        "wall_time_s": time.perf_counter() - t0, "resumed_from": start or None,
        "weights_report": load_report, "data": describe_data(cfg),
        "params": sum(p.numel() for p in model.parameters()),
        "config": asdict(cfg), "environment": env,
    }
    write_json(out / "results.json", result)
    return result


def run_or_resume(cfg: RunConfig, out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Finish the run in ``out_dir``: resume it when it holds the same config (a finished run
    is only re-evaluated), start afresh when its config differs or it holds no run."""
    out = Path(out_dir)
    config_path = out / "config.json"
    if config_path.exists():
        previous = json.loads(config_path.read_text())["config"]
        if previous != _config_record(cfg.resolved()):
            shutil.rmtree(out)
    results = out / "results.json"
    if results.exists() and json.loads(results.read_text())["config"] == \
            _config_record(cfg.resolved()):
        return json.loads(results.read_text())
    return train(cfg, out, resume=True, progress=progress)


def _ckpt_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["step"])


def describe_data(cfg: RunConfig) -> str:
    """Which data a run used, in words (shown next to results in the book)."""
    what = {"cifar10-jpeg": "real CIFAR-10 images stored as JPEG q75 (shared/data copy)"}
    text = what.get(cfg.dataset, cfg.dataset)
    if cfg.train_limit:
        text += f"; {cfg.train_limit} class-balanced training images"
    if cfg.eval_limit:
        text += f"; {cfg.eval_limit} class-balanced {cfg.eval_split} images"
    return text + f"; {cfg.img_size}px"


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mixer_lib.train",
        description="Fine-tune or train an MLP-Mixer; writes config.json, metrics.jsonl, "
                    "checkpoint.pt and results.json into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder of the run")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    for f in fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=f.metadata["help"])
            continue
        kind = {"int": int, "int | None": int, "float": float, "float | None": float}.get(
            str(f.type), str)
        parser.add_argument(flag, type=kind, default=f.default, help=f.metadata["help"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = {f.name: getattr(args, f.name) for f in fields(RunConfig)}
    try:
        cfg = RunConfig(**options)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    print(json.dumps({k: result[k] for k in ("dataset", "variant", "weights", "top1", "top5",
                                              "steps", "wall_time_s")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
