"""One optimiser update of the paper's recipe (the training loop's step): the global batch as
``accum_steps`` micro-batches on each process, mixup, clipping at a global norm, the update;
and the images-per-second the training log reports."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from mixer_lib.config import RunConfig
from mixer_lib.device_decode import to_device
from mixer_lib.distributed import World
from mixer_lib.optim import clip_grad_norm, lr_at, mixup


def _step_seed(seed: int, step: int) -> int:
    return (seed * 7_919 + step * 104_729) % (2**31)


def update(model: nn.Module, forward: nn.Module, optimizer: torch.optim.Optimizer,
           batches: Iterator, cfg: RunConfig, step: int, num_classes: int,
           device: torch.device, amp: torch.dtype | None, world: World) -> dict[str, float]:
    """One optimiser update of the global batch: ``accum_steps`` micro-batches on each rank
    (gradients averaged over ranks by DDP), clipping, the optimiser step. Returns the loss
    (mean over the global batch), learning rate, gradient norm and samples seen here."""
    lr = lr_at(step + cfg.lr_lead, cfg.lr, cfg.steps, cfg.warmup_steps, cfg.decay)
    for group in optimizer.param_groups:
        group["lr"] = lr
    torch.manual_seed(_step_seed(cfg.seed, step) + world.rank)
    mix_rng = np.random.default_rng([cfg.seed, step])
    optimizer.zero_grad(set_to_none=True)
    loss_total, seen = 0.0, 0
    for micro in range(cfg.accum_steps):
        x, y = next(batches)
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        last = micro == cfg.accum_steps - 1
        sync = contextlib.nullcontext() if last or world.size == 1 else forward.no_sync()
        with sync, torch.autocast(device.type, dtype=amp or torch.float32,
                                  enabled=amp is not None):
            if cfg.mixup_alpha > 0:
                x, target = mixup(x, y, num_classes, cfg.mixup_alpha, mix_rng)
            else:
                target = y
            loss = nn.functional.cross_entropy(forward(x).float(), target)
            (loss / cfg.accum_steps).backward()
        loss_total += float(loss.detach()) / cfg.accum_steps
        seen += y.numel()
    loss_total = world.sum([loss_total])[0] / world.size
    if not math.isfinite(loss_total):
        return {"loss": loss_total, "lr": lr, "grad_norm": float("nan"), "seen": seen}
    grad_norm = clip_grad_norm(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return {"loss": loss_total, "lr": lr, "grad_norm": grad_norm, "seen": seen}


class ImageRate:
    """Images per second since the last :meth:`take` (the training log's ``img_per_s``)."""

    def __init__(self) -> None:
        self.t, self.n = time.perf_counter(), 0

    def add(self, images: int) -> None:
        self.n += images

    def take(self) -> float:
        now = time.perf_counter()
        rate = self.n / max(now - self.t, 1e-9)
        self.t, self.n = now, 0
        return rate
