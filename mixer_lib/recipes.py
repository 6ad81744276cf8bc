"""Run settings in one home: the training recipes and the per-dataset presets.

In the manner of the official code's dataset presets (``vit_jax/configs``, big_vision's
transfer configs): everything a run takes by default from its recipe or its dataset lives here,
and the CLI, the protocol, the book profiles and the notebooks read it from here.

Sources: Mixer paper Section 3.1 and App. C (grid, evaluation pre-processing), ViT paper
Table 4 and App. B.1.1 (steps, dev splits), big_vision's transfer configs (warm-up).
"""

from __future__ import annotations

from dataclasses import dataclass

# Mixer App. C: ViT's fine-tuning grid with 0.001 dropped and 0.06 added.
PAPER_LR_GRID: tuple[float, ...] = (0.003, 0.01, 0.03, 0.06)

# How the eval images are brought to the model's resolution:
# "resmall_crop": shorter side to img_size / 0.875 (256 for 224), centre crop (paper, Table 3);
# "resize": straight to img_size x img_size (the official code's input pipeline).
EVAL_CROPS: dict[str, float] = {"resmall_crop": 224 / 256, "resize": 1.0}


@dataclass(frozen=True)
class Recipe:
    """A named training recipe: optimiser, schedule shape and their defaults."""

    name: str
    optimizer: str
    decay: str
    lr: float
    weight_decay: float
    steps: int  # when neither the user nor the dataset preset gives a number
    eval_crop: str
    about: str


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("finetune", "sgd", "cosine", 0.03, 0.0, 1000, "resmall_crop",
           "the paper's fine-tuning recipe: momentum SGD 0.9, cosine decay after linear "
           "warm-up, clipping at global norm 1, no weight decay, new zero head"),
    Recipe("scratch", "adamw", "linear", 1e-3, 0.05, 1000, "resize",
           "from random weights, as the paper's pre-training: AdamW, linear warm-up then "
           "linear decay, weight decay"),
)}


@dataclass(frozen=True)
class DatasetPreset:
    """Per-dataset fine-tuning settings (the official code's dataset presets)."""

    steps: int
    warmup_steps: int
    dev_fraction: float  # held out of train to choose the learning rate (ViT App. B.1.1)
    img_size: int = 224
    lr_grid: tuple[float, ...] = PAPER_LR_GRID


DATASET_PRESETS: dict[str, DatasetPreset] = {
    "imagenet1k": DatasetPreset(20_000, 500, 0.01),
    "cifar10": DatasetPreset(10_000, 500, 0.02),
    "cifar100": DatasetPreset(10_000, 500, 0.02),
    "pets": DatasetPreset(500, 100, 0.10),
    "flowers102": DatasetPreset(500, 100, 0.10),
    "cifar10-jpeg": DatasetPreset(10_000, 500, 0.02),
}
DEFAULT_DEV_FRACTION = 0.02  # for image folders without a preset


STANDIN_PREFIX = "standin:"  # dry-run stand-ins take the preset of the dataset they stand for


def preset_for(dataset: str) -> DatasetPreset | None:
    """The preset of ``dataset`` (of the dataset a ``standin:<name>`` stands for)."""
    return DATASET_PRESETS.get(dataset.removeprefix(STANDIN_PREFIX))


def dev_fraction(dataset: str) -> float:
    """The share of the training split held out as the dev ("val") split."""
    preset = preset_for(dataset)
    return preset.dev_fraction if preset else DEFAULT_DEV_FRACTION


# Named run settings used by the book's profiles and the notebooks' defaults.
# quick: a from-scratch Mixer-T/4 on 32 px real CIFAR-10 that a 2-core CPU trains in minutes.
QUICK_RUN: dict = {"variant": "Mixer-T/4", "weights": "random", "recipe": "scratch",
                   "img_size": 32, "steps": 300, "batch_size": 128, "lr": 2e-3,
                   "train_limit": 10_000, "eval_limit": 2_000, "device": "cpu"}
# paper: the paper's fine-tuning of the released B/16 ImageNet-21k weights, per-dataset steps.
PAPER_RUN: dict = {"variant": "Mixer-B/16", "weights": "imagenet21k", "recipe": "finetune",
                   "img_size": 224, "steps": None, "batch_size": 512, "lr": None,
                   "train_limit": None, "eval_limit": None, "device": "cuda"}
