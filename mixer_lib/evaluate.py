"""Evaluation: top-1/top-5, per-class accuracy, confusion matrix, the paper's "Avg 5"."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

# Paper Table 2: "Avg 5" = mean top-1 over these five downstream tasks.
AVG5_DATASETS = ("imagenet1k", "cifar10", "cifar100", "pets", "flowers102")


@dataclass
class EvalResult:
    """Accuracies in percent; ``confusion[i, j]`` counts true class i predicted as j."""

    top1: float
    top5: float
    loss: float
    num_samples: int
    per_class: list[float]
    confusion: torch.Tensor

    def summary(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "loss": self.loss,
                "num_samples": self.num_samples}


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu",
             num_classes: int | None = None, autocast_dtype: torch.dtype | None = None,
             progress: bool = False) -> EvalResult:
    """Top-1/top-5 accuracy of ``model`` over ``loader`` (batches of ``(images, labels)``)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    num_classes = num_classes or model.cfg.num_classes
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    correct1 = correct5 = n = 0
    loss_sum = 0.0
    for x, y in tqdm(loader, desc="eval", disable=not progress, leave=False):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            logits = model(x)
        logits = logits.float()
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        top = logits.topk(min(5, num_classes), dim=1).indices
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(dim=1).sum())
        n += y.numel()
        confusion += torch.bincount(y.cpu() * num_classes + top[:, 0].cpu(),
                                    minlength=num_classes**2).view(num_classes, num_classes)
    model.train(was_training)
    if n == 0:
        raise ValueError("evaluation loader yielded no samples")
    support = confusion.sum(1).clamp(min=1)
    per_class = (100.0 * confusion.diag() / support).tolist()
    return EvalResult(100.0 * correct1 / n, 100.0 * correct5 / n, loss_sum / n, n, per_class,
                      confusion)


@dataclass
class Avg5:
    """Mean top-1 over the paper's five tasks, or the list of missing ones."""

    value: float | None
    per_dataset: dict[str, float]
    missing: list[str]

    def __str__(self) -> str:
        if self.value is None:
            return f"Avg 5: n/a (missing {', '.join(self.missing)})"
        return f"Avg 5: {self.value:.2f}"


def avg5(top1_by_dataset: Mapping[str, float]) -> Avg5:
    """The paper's "Avg 5"; ``None`` (never an average over fewer) when any task is missing."""
    have = {d: float(top1_by_dataset[d]) for d in AVG5_DATASETS if d in top1_by_dataset}
    missing = [d for d in AVG5_DATASETS if d not in have]
    value = sum(have.values()) / len(have) if not missing else None
    return Avg5(value, have, missing)


@dataclass(frozen=True)
class AccuracyChange:
    """``top1_b - top1_a`` (points) with two binomial standard errors of that difference."""

    delta: float
    two_se: float

    @property
    def verdict(self) -> str:
        """"within noise" when ``|delta| < 2 s.e.``, else "drop" or "gain"."""
        if abs(self.delta) < self.two_se:
            return "within noise"
        return "drop" if self.delta < 0 else "gain"


def accuracy_change(top1_a: float, top1_b: float, num_samples: int) -> AccuracyChange:
    """Change from top-1 ``top1_a`` to ``top1_b`` (percent), each measured on ``num_samples``
    independent test images, with the binomial standard error of the difference."""
    var = sum(p * (100.0 - p) / num_samples for p in (top1_a, top1_b))
    return AccuracyChange(top1_b - top1_a, 2.0 * math.sqrt(var))
