"""Optimisers and learning-rate schedules of the paper's recipes.

Fine-tuning (paper Section 3.1 / Appendix, official ``vit_jax`` configs): momentum SGD 0.9,
batch 512, cosine decay after linear warm-up, global-norm clipping at 1, no weight decay.
Pre-training (paper Appendix): Adam(W) (0.9, 0.999), linear warm-up then linear decay,
weight decay, clipping at 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def lr_at(step: int, base_lr: float, total_steps: int, warmup_steps: int,
          decay: str = "cosine", linear_end: float = 1e-5) -> float:
    """Learning rate at ``step`` as in ``vit_jax.utils.create_learning_rate_schedule``.

    Decay progress p = clip((step - warmup) / (total - warmup), 0, 1); cosine gives
    base * (1 + cos(pi p)) / 2, linear gives linear_end + (base - linear_end)(1 - p); the
    result is multiplied by min(1, step / warmup). So lr(0) = 0, lr(warmup) = base,
    cosine lr halfway through the decay = base / 2 and lr(total) = 0.
    """
    if decay not in ("cosine", "linear", "constant"):
        raise ValueError(f"decay must be cosine, linear or constant, got {decay!r}")
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if decay == "cosine":
        lr = base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    elif decay == "linear":
        lr = linear_end + (base_lr - linear_end) * (1.0 - progress)
    else:
        lr = base_lr
    if warmup_steps:
        lr *= min(1.0, step / warmup_steps)
    return lr


def make_optimizer(params, name: str, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999)
                   ) -> torch.optim.Optimizer:
    """``sgd``: momentum SGD (Flax ``Momentum``: v = mv + g; p -= lr v) without dampening or
    Nesterov; ``adamw``: decoupled weight decay (the pre-training recipe)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {name!r}")


def clip_grad_norm(params, max_norm: float | None) -> float:
    """Clip the global L2 norm of all gradients to ``max_norm``; returns the norm before."""
    grads = [p for p in params if p.grad is not None]
    if max_norm is None or max_norm <= 0:
        return float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in grads])))
    return float(torch.nn.utils.clip_grad_norm_(grads, max_norm))


def mixup(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float,
          rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al., 2018): one lambda ~ Beta(alpha, alpha) per batch (from the seeded
    ``rng``), each sample mixed with the batch reversed. Returns inputs and soft targets."""
    soft = torch.nn.functional.one_hot(y, num_classes).to(x.dtype)
    if alpha <= 0:
        return x, soft
    lam = float(rng.beta(alpha, alpha))
    return lam * x + (1 - lam) * x.flip(0), lam * soft + (1 - lam) * soft.flip(0)
