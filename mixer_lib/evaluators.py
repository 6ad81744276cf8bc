"""Scores a finished run adds beside its top-1, each one evaluator (as big_vision's
``config.evals``): when it applies to a run, what it checks before any training starts, and
how it scores the trained model. Training (:mod:`mixer_lib.train`) and the evaluation of
released checkpoints (:mod:`mixer_lib.evaluate`) run the same list.

- ``real``: the ImageNet validation images scored against the ReaL labels (paper Table 3's
  second column), from the final evaluation's predictions.
- ``resize``: test top-1 once more with the other evaluation pre-processing. The paper's text
  (App. C) resizes the smaller side and crops the centre; the official ``vit_jax`` input
  pipeline resizes straight to the model's resolution, and the official README's CIFAR-10
  figures were made that way. A CIFAR-10 run evaluated the paper's way also reports
  ``top1_resize``, so each published figure can be set beside a number evaluated as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mixer_lib.config import RunConfig
from mixer_lib.data import TransformedSubset, build_split, sample_files
from mixer_lib.real import check_real_files, real_labels, real_top1
from mixer_lib.recipes import STANDIN_PREFIX
from mixer_lib.runtime import data_config


@dataclass(frozen=True)
class Finished:
    """What an evaluator scores: the final evaluation's top-1 predictions (in the order of
    ``eval_ds``), the evaluated split, the run's config, and ``top1_of(dataset)``: the trained
    model's top-1 (%) on another dataset, evaluated as the run evaluates."""

    predictions: Sequence[int]
    eval_ds: TransformedSubset
    cfg: RunConfig
    top1_of: Callable[[TransformedSubset], float]


@dataclass(frozen=True)
class Evaluator:
    """``applies(cfg)``; ``prepare(eval_ds, progress)`` -> its state, called before training
    (a missing label file fails then, not after hours); ``score(state, finished)`` -> fields
    of the result record."""

    name: str
    applies: Callable[[RunConfig], bool]
    prepare: Callable[[TransformedSubset, bool], Any]
    score: Callable[[Any, Finished], dict[str, Any]]


def wants_real(cfg: RunConfig) -> bool:
    """ImageNet runs scored on the validation set (the "test" split) report ReaL top-1."""
    return cfg.dataset.removeprefix(STANDIN_PREFIX) == "imagenet1k" and cfg.eval_split == "test"


def _real_prepare(eval_ds: TransformedSubset, progress: bool) -> list:
    check_real_files(sample_files(eval_ds))
    return real_labels(progress=progress)


def _real_score(labels: list, done: Finished) -> dict[str, Any]:
    top1, n = real_top1(list(done.predictions), sample_files(done.eval_ds), labels)
    return {"real_top1": top1, "num_real": n}


RESIZE_DATASETS = ("cifar10",)  # the official README's figures, evaluated by plain resizing


def wants_resize(cfg: RunConfig) -> bool:
    """Runs on a dataset of the official README (CIFAR-10), evaluated the paper's way (resize
    the smaller side, crop) on the test split."""
    return (cfg.dataset.removeprefix(STANDIN_PREFIX) in RESIZE_DATASETS
            and cfg.eval_crop not in (None, "resize") and cfg.eval_split == "test")


def _resize_score(_: Any, done: Finished) -> dict[str, Any]:
    other = dataclasses.replace(done.cfg, eval_crop="resize")
    return {"top1_resize": done.top1_of(build_split(data_config(other), "test"))}


EVALUATORS: tuple[Evaluator, ...] = (
    Evaluator("real", wants_real, _real_prepare, _real_score),
    Evaluator("resize", wants_resize, lambda ds, progress: None, _resize_score),
)


def prepare(cfg: RunConfig, eval_ds: TransformedSubset, progress: bool = False
            ) -> list[tuple[Evaluator, Any]]:
    """The evaluators that apply to ``cfg``, each with its prepared state."""
    return [(e, e.prepare(eval_ds, progress)) for e in EVALUATORS if e.applies(cfg)]


def score(prepared: list[tuple[Evaluator, Any]], done: Finished) -> dict[str, Any]:
    """Every prepared evaluator's fields for the result record."""
    out: dict[str, Any] = {}
    for evaluator, state in prepared:
        out |= evaluator.score(state, done)
    return out
