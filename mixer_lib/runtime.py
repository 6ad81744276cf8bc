"""How a run executes, given its :class:`~mixer_lib.config.RunConfig`: on which device, in
which precision, with which data settings, in which micro-batches.

Shared by training (:mod:`mixer_lib.train`) and evaluation (:mod:`mixer_lib.evaluate`), so
neither needs the other for it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import torch

from mixer_lib.baselines import BASELINES
from mixer_lib.config import ConfigError, RunConfig, parse_classes, parse_randaugment
from mixer_lib.data import DataConfig
from mixer_lib.distributed import World
from mixer_lib.driver import no_gpu_reason
from mixer_lib.memory import MemoryPlan, plan
from mixer_lib.recipes import EVAL_CROPS


def pick_device(name: str, world: World | None = None) -> torch.device:
    """``auto`` -> this rank's GPU when there is one, else the CPU."""
    local = world.local_rank if world else 0
    if name == "auto":
        return torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device 'cuda' requested but torch sees no GPU: {no_gpu_reason()}. "
                          f"Or use device=cpu.")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local}")
    return device


def compute_dtype(cfg: RunConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast (``precision`` bf16, or auto on a GPU), else None (float32)."""
    if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


# ``compile`` left to the run (None) compiles where the compile time pays for itself within
# it: a GPU run of a Mixer that trains on at least this many images. On an H200 in bf16
# (results/perf/benchmark-perf-gpu-NVIDIA-H200.json, 2026-11-27) compiling Mixer-B/16 took
# 42-48 s (training step and inference) and saved 75 us per training image (3,130-3,160
# images/s eager, 4,100-4,130 compiled), paying back after about 560,000 images (batch 128)
# and 640,000 (batch 512 in micro-batches of 128); the line adds a fifth for hosts that
# compile more slowly. tests/test_runtime.py checks it against every committed GPU record.
# On a CPU the compiled step was slower (benchmark-perf-cpu-cpu.json): never there.
COMPILE_PAYS_AFTER_IMAGES = 768_000


def decide_compile(cfg: RunConfig, device: torch.device) -> bool:
    """``cfg.compile`` when given; else on a GPU, for a Mixer (not a baseline), when the run
    trains on at least :data:`COMPILE_PAYS_AFTER_IMAGES` images (``steps * batch_size``) and
    Triton (what ``torch.compile`` generates GPU kernels with) is installed."""
    if cfg.compile is not None:
        return cfg.compile
    return (device.type == "cuda" and cfg.variant not in BASELINES
            and (cfg.steps or 0) * cfg.batch_size >= COMPILE_PAYS_AFTER_IMAGES
            and importlib.util.find_spec("triton") is not None)


def execution_plan(cfg: RunConfig, device: torch.device,
                   world: World) -> tuple[RunConfig, MemoryPlan | None]:
    """``cfg`` with ``accum_steps`` and ``grad_checkpointing`` decided: on a GPU from its free
    memory and the run's activation estimate (:mod:`mixer_lib.memory`), where they are left
    to the run; elsewhere one micro-batch per update and no checkpointing unless asked. Then
    ``compile`` where it is left to the run (:func:`decide_compile`)."""
    cfg, memory = _memory_plan(cfg, device, world)
    return dataclasses.replace(cfg, compile=decide_compile(cfg, device)), memory


def _memory_plan(cfg: RunConfig, device: torch.device,
                 world: World) -> tuple[RunConfig, MemoryPlan | None]:
    if cfg.variant in BASELINES or device.type != "cuda":
        return dataclasses.replace(
            cfg, accum_steps=cfg.accum_steps or 1,
            grad_checkpointing="on" if cfg.grad_checkpointing == "on" else "off"), None
    free = int(world.minimum(torch.cuda.mem_get_info(device)[0]))  # every rank plans alike
    precision = "bf16" if compute_dtype(cfg, device) is not None else "fp32"
    chosen = plan(cfg.variant, cfg.img_size, cfg.batch_size, free, precision, world.size,
                  cfg.optimizer, cfg.grad_checkpointing, cfg.accum_steps)
    if not chosen.fits:
        if cfg.accum_steps is None and cfg.grad_checkpointing == "auto":
            raise ConfigError(f"this run does not fit the free memory of {device}: "
                              f"{chosen.describe()}. Use more GPUs (gpus / torchrun), a "
                              f"smaller img_size, or free the GPU.")
        print(f"warning: the settings given may not fit the free memory of {device}: "
              f"{chosen.describe()}", file=sys.stderr)
    return dataclasses.replace(cfg, accum_steps=chosen.accum_steps,
                               grad_checkpointing="on" if chosen.grad_checkpointing
                               else "off"), chosen


def data_config(cfg: RunConfig) -> DataConfig:
    return DataConfig(dataset=cfg.dataset, root=cfg.data_root, img_size=cfg.img_size,
                      train_limit=cfg.train_limit, eval_limit=cfg.eval_limit, seed=cfg.seed,
                      crop_pct=EVAL_CROPS[cfg.eval_crop or "resize"],
                      holdout_dev=cfg.eval_split == "val",
                      randaugment=parse_randaugment(cfg.randaugment), download=cfg.download,
                      permutation=cfg.permutation, permutation_patch=cfg.permutation_patch,
                      classes=parse_classes(cfg.classes), flip=cfg.flip)
