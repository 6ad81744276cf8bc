"""Evaluation: top-1/top-5, per-class accuracy, confusion matrix, the paper's "Avg 5"."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from mixer_lib.significance import SE_MULTIPLE, significant

# How evaluate_released computes (see its docstring)
PRECISIONS = ("auto", "bf16", "bf16-weights", "fp32")

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
    predictions: torch.Tensor | None = None  # top-1 class of each sample, in loader order

    def summary(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "loss": self.loss,
                "num_samples": self.num_samples}


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu",
             num_classes: int | None = None, autocast_dtype: torch.dtype | None = None,
             progress: bool = False) -> EvalResult:
    """Top-1/top-5 accuracy of ``model`` over ``loader`` (batches of ``(images, labels)``).
    Images are cast to the dtype of the model's weights (bf16 weights: bf16 images)."""
    device = torch.device(device)
    first = next(model.parameters(), None)  # a model may have none (a fixed function)
    weights_dtype = first.dtype if first is not None else None
    was_training = model.training
    model.eval()
    num_classes = num_classes or model.cfg.num_classes
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    correct1 = correct5 = n = 0
    loss_sum = 0.0
    predictions = []
    for x, y in tqdm(loader, desc="eval", disable=not progress, leave=False):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if weights_dtype is not None and x.is_floating_point() and x.dtype != weights_dtype:
            x = x.to(weights_dtype)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            logits = model(x)
        logits = logits.float()
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        top = logits.topk(min(5, num_classes), dim=1).indices
        predictions.append(top[:, 0].cpu())
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
                      confusion, torch.cat(predictions))


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
    """``top1_b - top1_a`` (points) with the binomial standard error of that difference."""

    delta: float
    se: float

    @property
    def two_se(self) -> float:
        """The margin an effect must exceed (:data:`mixer_lib.significance.SE_MULTIPLE` s.e.)."""
        return SE_MULTIPLE * self.se

    @property
    def verdict(self) -> str:
        """"within noise" unless the change is significant
        (:func:`mixer_lib.significance.significant`), else "drop" or "gain"."""
        if not significant(self.delta, self.se):
            return "within noise"
        return "drop" if self.delta < 0 else "gain"


def accuracy_change(top1_a: float, top1_b: float, num_samples: int) -> AccuracyChange:
    """Change from top-1 ``top1_a`` to ``top1_b`` (percent), each measured on ``num_samples``
    independent test images, with the binomial standard error of the difference."""
    var = sum(p * (100.0 - p) / num_samples for p in (top1_a, top1_b))
    return AccuracyChange(top1_b - top1_a, math.sqrt(var))


# ----------------------------------------------------------------------------- CLI


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in label order (shipped with torchvision, offline)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


@torch.no_grad()
def top5_classes(model: nn.Module, images: torch.Tensor,
                 names: list[str]) -> list[list[tuple[str, float]]]:
    """The five most probable classes (name, probability) of each image ``(B, 3, H, W)``."""
    model.eval()
    probs = model(images).float().softmax(-1)
    top = probs.topk(5, dim=-1)
    return [[(names[int(i)], float(p)) for i, p in zip(idx, val, strict=True)]
            for idx, val in zip(top.indices, top.values, strict=True)]


def released_top5(variant: str, weights: str, dataset: str, data_root: str | None,
                  img_size: int, count: int = 4, download: bool = False
                  ) -> tuple[str, tuple[list[str], list[list[str]]]]:
    """What a released ImageNet-1k classifier sees: its load report, and for ``count`` test
    images of ``dataset`` (class-balanced) their label and the classifier's five most probable
    ImageNet classes with their probabilities."""
    from mixer_lib.data import DataConfig, build_split
    from mixer_lib.datasets import class_names
    from mixer_lib.pretrained import pretrained

    classifier, report = pretrained(variant, weights, img_size=img_size)
    ds = build_split(DataConfig(dataset=dataset, root=data_root, img_size=img_size,
                                eval_limit=count, download=download), "test")
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    top = top5_classes(classifier, images, imagenet_class_names())
    rows = [[class_names(ds.base)[ds.targets[i]],
             ", ".join(f"{name} ({p:.2f})" for name, p in classes)]
            for i, classes in enumerate(top)]
    return str(report), ([f"{dataset} label",
                          f"top-5 ImageNet classes ({variant} {weights})"], rows)


def evaluate_released(variant: str, weights: str, dataset: str = "imagenet1k",
                      img_size: int = 224, eval_crop: str = "resmall_crop",
                      eval_limit: int | None = None, data_root: str | None = None,
                      batch_size: int = 128, device: str = "auto",
                      num_workers: int | None = None, progress: bool = True,
                      precision: str = "auto") -> dict:
    """Top-1/top-5 (and ReaL for ImageNet) of a released checkpoint with its own head, on
    the test split of ``dataset``, without fine-tuning (paper Table 3 at 224 px).

    ``precision``: ``auto`` (bf16 autocast on a GPU, float32 elsewhere), ``bf16`` (autocast),
    ``bf16-weights`` (weights and activations in bf16, no autocast: 1.29x autocast's
    inference rate for Mixer-B/16 on an H200 with the fused token-mixing kernel in both,
    results/perf/benchmark-perf-gpu-NVIDIA-H200.json at bb041df, 1.25x without it at 8ea1cac;
    LayerNorms and the residual stream in bf16; tests/test_evaluate_cli.py bounds what that
    changes in a trained Mixer's predictions) or ``fp32``. On a GPU the bf16 modes take
    :mod:`mixer_lib.token_kernel` for the token mixing."""
    from mixer_lib import evaluators
    from mixer_lib.checkpoints import WEIGHTS, CheckpointError, checkpoint_info
    from mixer_lib.config import ConfigError, RunConfig
    from mixer_lib.data import build_split
    from mixer_lib.datasets import class_names
    from mixer_lib.pretrained import pretrained
    from mixer_lib.provenance import environment
    from mixer_lib.runtime import data_config, pick_device
    from mixer_lib.sampling import make_eval_loader

    cfg = RunConfig(dataset=dataset, variant=variant, weights=weights, img_size=img_size,
                    eval_crop=eval_crop, eval_limit=eval_limit, data_root=data_root,
                    batch_size=batch_size, device=device, num_workers=num_workers)
    img_size, batch_size, num_workers = cfg.img_size, cfg.batch_size, cfg.num_workers
    if weights not in WEIGHTS:
        raise ConfigError(f"weights must name a released checkpoint; got {weights!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of "
                          f"{', '.join(PRECISIONS)}")
    info = checkpoint_info(variant, weights)
    test = build_split(data_config(cfg), "test")
    names = class_names(test.base)
    if len(names) != info.num_classes:
        raise CheckpointError(
            f"{info.name} has a {info.num_classes}-class head but {dataset} has {len(names)} "
            f"classes; evaluate it on the dataset it was trained for, or fine-tune it "
            f"(python -m mixer_lib.train)")
    extra_evals = evaluators.prepare(cfg, test, progress)  # ReaL's labels, before the model
    dev = pick_device(device)
    model, report = pretrained(variant, weights, img_size=img_size, progress=progress)
    model.to(dev)
    amp = torch.bfloat16 if precision == "bf16" or (precision == "auto" and
                                                    dev.type == "cuda") else None
    if precision == "bf16-weights":
        model.to(torch.bfloat16)

    def top1_of(ds) -> float:
        return evaluate(model, make_eval_loader(ds, batch_size, dev, num_workers), dev,
                        info.num_classes, amp, progress=progress).top1

    result = evaluate(model, make_eval_loader(test, batch_size, dev, num_workers), dev,
                      info.num_classes, amp, progress=progress)
    return {"dataset": dataset, "variant": variant, "weights": weights,
            "img_size": img_size, "eval_crop": eval_crop, "fine_tuned": False,
            "precision": "bf16 autocast" if amp else "bf16 weights"
            if precision == "bf16-weights" else "float32",
            **result.summary(), "weights_report": str(report),
            "environment": environment(dev),
            **evaluators.score(extra_evals, evaluators.Finished(
                result.predictions.tolist(), test, cfg.resolved(), top1_of))}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from mixer_lib.errors import USER_ERRORS, report
    from mixer_lib.provenance import write_json

    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m mixer_lib.evaluate",
        description="Evaluate a released checkpoint with its own head, without fine-tuning "
                    "(e.g. --variant Mixer-B/16 --weights imagenet1k --dataset imagenet1k; "
                    "paper Table 3 predicts about 76.4%% top-1 at 224 px).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--weights", required=True, help="imagenet1k, imagenet21k, sam, gsam")
    parser.add_argument("--dataset", default="imagenet1k")
    parser.add_argument("--img-size", default="224")
    parser.add_argument("--eval-crop", default="resmall_crop", help="resmall_crop or resize")
    parser.add_argument("--eval-limit", default=None, help="class-balanced subset size")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--batch-size", default="128")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-workers", default=None)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto: bf16 autocast on a GPU, float32 elsewhere; bf16-weights: "
                             "weights and activations in bf16 (faster on a GPU)")
    parser.add_argument("--out", default=None, help="write the record to this JSON file")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        record = evaluate_released(
            args.variant, args.weights, args.dataset, args.img_size, args.eval_crop,
            args.eval_limit, args.data_root, args.batch_size, args.device, args.num_workers,
            progress=not args.no_progress, precision=args.precision)
    except USER_ERRORS as err:
        return report(err)
    if args.out:
        write_json(args.out, record)
    print(json.dumps({k: v for k, v in record.items() if k != "environment"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
