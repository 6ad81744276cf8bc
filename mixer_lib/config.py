"""``RunConfig``: everything that defines a run, checked when it is made.

Every option is validated (type and range) in ``__post_init__``, so bad input from the CLI, a
notebook parameter (papermill passes ``-p steps ten`` as the string ``"ten"``) or Python code
fails with a message that names the option, the value and what is allowed, before any folder
is written or any data read. Numbers given as strings ("10", "0.03") are converted.

A run's identity (:func:`experiment`) is what changes its numbers; the fields in
:data:`EXECUTION_FIELDS` only say how it runs (where the data lives, how many workers, which
device, how often to log) and may differ when a run is resumed or reused.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from mixer_lib.baselines import BASELINE_PATCH, BASELINES
from mixer_lib.checkpoints import WEIGHTS
from mixer_lib.datasets import DATASETS, DataError, spec_for
from mixer_lib.model import get_config
from mixer_lib.permute import PERMUTATIONS
from mixer_lib.recipes import EVAL_CROPS, RECIPES, preset_for


class ConfigError(ValueError):
    """An option with a value it cannot take; the message names option, value and range."""


def _opt(help_text: str, default: Any = None, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help_text, **kw})


@dataclass
class RunConfig:
    """Everything that defines a run. ``None`` fields take the recipe's or dataset's default
    (:mod:`mixer_lib.recipes`); :meth:`resolved` fills them in."""

    dataset: str = _opt("dataset name (" + ", ".join(DATASETS) + ") or imagefolder:/path",
                        "cifar10-jpeg")
    variant: str = _opt("Mixer variant: Table 1 name (Mixer-B/16, ...), Mixer-T/4 (and the "
                        "scale study's Mixer-W64/4, Mixer-W192/4), or a baseline: ResNet-S, "
                        "ViT-T/4", "Mixer-B/16")
    weights: str = _opt("random, a released pre-training (" + ", ".join(WEIGHTS)
                        + ") or a path to an official-layout .npz", "random")
    recipe: str = _opt("finetune (momentum SGD, cosine, no weight decay) or scratch "
                       "(AdamW, linear decay, weight decay)", "finetune", choices=tuple(RECIPES))
    img_size: int = _opt("training/eval resolution in pixels (a multiple of the patch size)",
                         224, kind=int, low=1)
    steps: int | None = _opt("optimiser updates (default: the dataset preset's fine-tuning "
                             "steps, or 1000)", kind=int, low=1)
    batch_size: int = _opt("effective (global) batch size per update", 512, kind=int, low=1)
    accum_steps: int | None = _opt("micro-batches per update on each process (same global "
                                   "batch, less memory); default: 1 on a CPU, on a GPU the "
                                   "fewest that fit its free memory (mixer_lib.memory)",
                                   kind=int, low=1)
    grad_checkpointing: str = _opt("recompute each block in the backward pass to save "
                                   "memory: auto (only when one image per micro-batch would "
                                   "not fit otherwise), on, off", "auto",
                                   choices=("auto", "on", "off"))
    lr: float | None = _opt("peak learning rate (default 0.03 fine-tuning, 1e-3 scratch)",
                            kind=float, low=0.0, low_open=True)
    warmup_steps: int | None = _opt("linear warm-up steps (default: the dataset preset's, or "
                                    "10%% of steps)", kind=int, low=0)
    decay: str | None = _opt("cosine, linear or constant (default cosine fine-tuning, linear "
                             "scratch)", choices=(None, "cosine", "linear", "constant"))
    optimizer: str | None = _opt("sgd or adamw (default by recipe)",
                                 choices=(None, "sgd", "adamw"))
    momentum: float = _opt("SGD momentum", 0.9, kind=float, low=0.0, high=1.0, high_open=True)
    weight_decay: float | None = _opt("decoupled weight decay (default 0 fine-tuning, 0.05 "
                                      "scratch)", kind=float, low=0.0)
    grad_clip: float = _opt("clip the global gradient norm to this (0 = off)", 1.0,
                            kind=float, low=0.0)
    mixup_alpha: float = _opt("mixup Beta(alpha, alpha); 0 = off", 0.0, kind=float, low=0.0)
    randaugment: str | None = _opt("RandAugment 'num_ops,magnitude', e.g. 2,15; empty = off")
    drop_rate: float = _opt("dropout in MLPs and before the head", 0.0, kind=float, low=0.0,
                            high=1.0, high_open=True)
    drop_path_rate: float = _opt("stochastic depth rate of the last block", 0.0, kind=float,
                                 low=0.0, high=1.0, high_open=True)
    gelu: str = _opt("tanh (official) or exact", "tanh", choices=("tanh", "exact"))
    train_limit: int | None = _opt("use a class-balanced seeded subset of this many training "
                                   "images", kind=int, low=1)
    eval_limit: int | None = _opt("use a class-balanced subset of this many eval images",
                                  kind=int, low=1)
    eval_split: str = _opt("split evaluated during and after training: test (training uses "
                           "the whole training split) or val (the dev slice held out of the "
                           "training split, which training then leaves out)", "test",
                           choices=("test", "val"))
    eval_crop: str | None = _opt("eval pre-processing: resmall_crop (paper Table 3: shorter "
                                 "side to img_size/0.875, centre crop) or resize (official "
                                 "code); default by recipe", choices=(None, *EVAL_CROPS))
    eval_every: int = _opt("evaluate every N updates (and at the end)", 500, kind=int, low=1)
    checkpoint_every: int = _opt("write checkpoint.pt every N updates (and at the end)", 500,
                                 kind=int, low=1)
    log_every: int = _opt("write a metrics record every N updates", 10, kind=int, low=1)
    seed: int = _opt("seed for init, data order, augmentation, dropout", 0, kind=int, low=0)
    device: str = _opt("auto, cpu, cuda or cuda:N", "auto")
    precision: str = _opt("auto (bf16 autocast on GPU, fp32 on CPU), bf16 or fp32", "auto",
                          choices=("auto", "bf16", "fp32"))
    compile: bool | None = _opt("wrap the model in torch.compile (default: on a GPU when the "
                                "run is long enough for the compile time to pay back, "
                                "mixer_lib.runtime.decide_compile; never on a CPU)", kind=bool)
    num_workers: int | None = _opt("data-loader worker processes (default on a CPU: none "
                                   "with 2 cores or fewer, else half the cores, at most 2; "
                                   "on a GPU each process's share of the cores less one, at "
                                   "most 12)", kind=int, low=0)
    data_root: str | None = _opt("data root (default $MIXER_DATA_ROOT or ./data)")
    download: bool = _opt("let torchvision download datasets it can", False, kind=bool)
    permutation: str = _opt("fixed input shuffle of paper Section 3.4: none, patch_pixel, "
                            "global", "none", choices=PERMUTATIONS)
    permutation_patch: int = _opt("patch size of the patch_pixel shuffle", 4, kind=int, low=1)
    classes: str | None = _opt("train and evaluate on these classes only, relabelled 0..k-1: "
                               "'0-4' or '5,6,7,8,9' (class indices of the dataset)")
    flip: bool = _opt("random horizontal flip in training (official: on)", True, kind=bool)
    decode: str = _opt("where training images are decoded and augmented: cpu (PIL in the "
                       "loader's workers, the official pipeline) or device (JPEG files decoded "
                       "and cropped on the GPU with the same seeded crop boxes and flips; "
                       "resampling differs slightly from PIL's)", "cpu",
                       choices=("cpu", "device"))
    data_order: str = _opt("shuffle (a new seeded order every epoch, official) or fixed (one "
                           "seeded order repeated every epoch)", "shuffle",
                           choices=("shuffle", "fixed"))
    lr_lead: int = _opt("updates the learning-rate schedule runs ahead of the optimiser (1 "
                        "reproduces a scheduler stepped before the optimiser)", 0, kind=int,
                        low=0, high=1)
    report: str = _opt("final (the run's last evaluation, official) or best (the best "
                       "periodic evaluation: selection on the evaluated split)", "final",
                       choices=("final", "best"))
    token_init: str = _opt("token-mixing weights at a larger resolution than the checkpoint's: "
                           "pretrained (block-diagonal copies, App. C) or random (fresh "
                           "initialisation)", "pretrained", choices=("pretrained", "random"))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _checked(f, getattr(self, f.name)))
        try:
            spec_for(self.dataset)
        except DataError as err:
            raise ConfigError(str(err)) from err
        if self.variant not in BASELINES or self.variant in BASELINE_PATCH:
            try:
                patch = BASELINE_PATCH.get(self.variant) or get_config(self.variant).patch_size
            except ValueError as err:
                raise ConfigError(f"{err} (or the baseline {', '.join(BASELINES)})") from err
            if self.img_size % patch:
                near = sorted({max(patch, self.img_size // patch * patch),
                               (self.img_size // patch + 1) * patch})
                raise ConfigError(
                    f"img_size {self.img_size} is not a multiple of {self.variant}'s patch size "
                    f"{patch}; use e.g. {' or '.join(map(str, near))}")
        if not (self.weights == "random" or self.weights in WEIGHTS
                or self.weights.endswith((".npz", ".pt"))):
            raise ConfigError(f"unknown weights {self.weights!r}; use random, one of "
                              f"{', '.join(WEIGHTS)}, a path to an official-layout .npz file "
                              f"or a run's checkpoint.pt")
        if self.classes is not None:
            parse_classes(self.classes)
        if self.device != "auto" and not (self.device == "cpu" or
                                          self.device.startswith("cuda")):
            raise ConfigError(f"unknown device {self.device!r}; use auto, cpu, cuda or cuda:N")
        if self.accum_steps and self.batch_size % self.accum_steps:
            raise ConfigError(f"batch_size {self.batch_size} is not divisible by accum_steps "
                              f"{self.accum_steps}")
        if self.permutation == "patch_pixel" and self.img_size % self.permutation_patch:
            raise ConfigError(f"permutation_patch {self.permutation_patch} does not divide "
                              f"img_size {self.img_size}")
        if self.randaugment:
            parse_randaugment(self.randaugment)
        if self.decode == "device" and (self.randaugment or self.permutation != "none"):
            raise ConfigError("decode='device' runs the paper's training augmentation (Inception "
                              "crop and flip) on the device; RandAugment and input permutations "
                              "run on PIL images, so use decode='cpu' with them")

    def resolved(self) -> RunConfig:
        """A copy with every recipe and dataset default filled in (what is recorded)."""
        recipe = RECIPES[self.recipe]
        preset = preset_for(self.dataset) if self.recipe == "finetune" else None
        steps = self.steps if self.steps is not None else (preset.steps if preset
                                                           else recipe.steps)
        if self.warmup_steps is not None:
            warmup = self.warmup_steps
        elif preset and self.steps is None:
            warmup = preset.warmup_steps
        else:  # scratch, or steps set by hand
            warmup = max(1, steps // 10)
        return dataclasses.replace(
            self, steps=steps, warmup_steps=min(warmup, steps),
            lr=self.lr if self.lr is not None else recipe.lr,
            decay=self.decay or recipe.decay,
            optimizer=self.optimizer or recipe.optimizer,
            weight_decay=self.weight_decay if self.weight_decay is not None
            else recipe.weight_decay,
            eval_crop=self.eval_crop or recipe.eval_crop,
        )


# What says how a run is executed, not what it computes: may change between resumes.
# The micro-batch split and checkpointing change how memory is used, not what an update
# computes (the same global batch; equal within float rounding, tests/test_memory.py).
EXECUTION_FIELDS = ("data_root", "num_workers", "device", "download", "compile",
                    "eval_every", "checkpoint_every", "log_every", "accum_steps",
                    "grad_checkpointing")


def experiment(cfg: RunConfig | dict) -> dict[str, Any]:
    """The run's identity: its resolved config without :data:`EXECUTION_FIELDS`, as JSON
    reads it back (tuples become lists), for comparison with a stored ``config.json``."""
    if isinstance(cfg, RunConfig):
        record = asdict(cfg.resolved())
    else:  # a stored record: fields added since it was written take their defaults
        record = {**_FIELD_DEFAULTS, **cfg}
    record = json.loads(json.dumps(record))
    return {k: v for k, v in record.items() if k not in EXECUTION_FIELDS}


_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ between two experiment records: name -> (old, new)."""
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)}


def parse_classes(text: str | None) -> tuple[int, ...] | None:
    """``"0-4"`` -> ``(0, 1, 2, 3, 4)``; ``"5,7"`` -> ``(5, 7)``; empty -> None."""
    if text is None or str(text).strip() == "":
        return None
    out: list[int] = []
    try:
        for part in str(text).split(","):
            lo, _, hi = part.strip().partition("-")
            out += range(int(lo), int(hi) + 1) if hi else [int(lo)]
    except ValueError as err:
        raise ConfigError(f"classes must be like '0-4' or '5,6,7'; got {text!r}") from err
    if not out or min(out) < 0 or len(set(out)) != len(out):
        raise ConfigError(f"classes must list distinct class indices >= 0; got {text!r}")
    return tuple(out)


def parse_randaugment(text: str | None) -> tuple[int, int] | None:
    """``"2,15"`` -> ``(2, 15)``; empty -> None."""
    if not text:
        return None
    try:
        n, m = (int(v) for v in str(text).split(","))
    except ValueError as err:
        raise ConfigError(f"randaugment must be 'num_ops,magnitude' like 2,15; got {text!r}") \
            from err
    if n < 1 or not 0 <= m <= 30:
        raise ConfigError(f"randaugment {text!r}: num_ops must be >= 1 and magnitude 0..30")
    return n, m


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _checked(f: dataclasses.Field, value: Any) -> Any:
    """``value`` of field ``f`` converted to its kind and checked against its range/choices."""
    meta, name = f.metadata, f.name
    optional = "None" in str(f.type)
    if value is None or (optional and isinstance(value, str) and value.strip() in ("", "None")):
        if optional:
            return None
        raise ConfigError(f"{name} needs a value; got None")
    if "choices" in meta:
        if value not in meta["choices"]:
            shown = ", ".join(str(c) for c in meta["choices"] if c is not None)
            raise ConfigError(f"unknown {name} {value!r}; choose one of {shown}")
        return value
    kind = meta.get("kind")
    if kind is None:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be text; got {value!r} ({type(value).__name__})")
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{name} must be true or false; got {value!r}")
    number = _number(name, value, kind)
    _in_range(name, number, meta)
    return number


def _number(name: str, value: Any, kind: type) -> int | float:
    what = "an integer" if kind is int else "a number"
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be {what}; got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip().replace("_", ""))
        except ValueError as err:
            raise ConfigError(f"{name} must be {what}; got the text {value!r}") from err
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be {what}; got {value!r}")
    if kind is int:
        if float(value) != int(value):
            raise ConfigError(f"{name} must be {what}; got {value!r}")
        return int(value)
    return float(value)


def _in_range(name: str, value: float, meta: dict) -> None:
    low, high = meta.get("low"), meta.get("high")
    ok_low = low is None or (value > low if meta.get("low_open") else value >= low)
    ok_high = high is None or (value < high if meta.get("high_open") else value <= high)
    if ok_low and ok_high:
        return
    parts = []
    if low is not None:
        parts.append(f"{'>' if meta.get('low_open') else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if meta.get('high_open') else '<='} {high:g}")
    raise ConfigError(f"{name} must be {' and '.join(parts)}; got {value:g}")
