"""A run's data: the train/dev/test splits of a dataset (class-balanced seeded subsets, class
subsets, input permutations) with the paper's preprocessing, every sample a function of
(seed, position). Datasets themselves: :mod:`mixer_lib.datasets`; preprocessing:
:mod:`mixer_lib.transforms`; the sample order and loader settings: :mod:`mixer_lib.sampling`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from mixer_lib.batch_augment import MAX_OUTPUT_SIDE, BatchedInceptionCrop
from mixer_lib.datasets import (
    SPLITS,
    DataError,
    base_dataset,
    class_names,
    dataset_targets,
    spec_for,
)
from mixer_lib.permute import FixedPermutation
from mixer_lib.recipes import dev_fraction
from mixer_lib.transforms import ToSignedTensor, eval_transform, train_transform


def balanced_subset(targets: Sequence[int], limit: int | None, seed: int) -> list[int]:
    """Deterministic class-balanced subset of indices: ``limit`` samples, round-robin over
    classes in a seeded order. Returns all indices (seeded order) when limit is None."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(targets))
    if limit is None or limit >= len(targets):
        return sorted(order.tolist())
    by_class: dict[int, list[int]] = {}
    for i in order.tolist():
        by_class.setdefault(targets[i], []).append(i)
    picked: list[int] = []
    queues = [by_class[c] for c in sorted(by_class)]
    depth = 0
    while len(picked) < limit:
        for q in queues:
            if depth < len(q) and len(picked) < limit:
                picked.append(q[depth])
        depth += 1
    return sorted(picked)


class TransformedSubset(Dataset):
    """``indices`` of ``base`` with a transform; each item's randomness comes from a seed that
    the sampler passes with the index, so augmentation is identical across resumes."""

    def __init__(self, base: Dataset, indices: Sequence[int], transform: Callable,
                 classes: Sequence[int] | None = None) -> None:
        self.base, self.indices, self.transform = base, list(indices), transform
        targets = dataset_targets(base)
        # a class subset is relabelled 0..k-1 in the order given
        self.label_map = {c: i for i, c in enumerate(classes)} if classes is not None else None
        self.targets = [self._label(targets[i]) for i in self.indices]
        names = class_names(base)
        self.classes = [names[c] for c in classes] if classes is not None else names

    def _label(self, label: int) -> int:
        return self.label_map[label] if self.label_map is not None else label

    decoded: np.ndarray | None = None
    uint8_out = False  # seeded batches hand over uint8 pixels (hand_over_uint8)

    def hand_over_uint8(self) -> bool:
        """Let seeded batches hand over ``(3, H, W)`` uint8 pixels instead of float32, for a
        GPU to scale (:func:`mixer_lib.device_decode.to_device`): a quarter of the bytes
        through the workers' shared memory, pinning and the copy, and the same values bit
        for bit (:meth:`ToSignedTensor.scale`). Only where the transform ends in the
        official scaling; returns whether it does."""
        steps = getattr(self.transform, "transforms", None)
        last = steps[-1] if steps else None
        self.uint8_out = isinstance(last, ToSignedTensor) and last.is_official()
        return self.uint8_out

    def pixels_form(self) -> str:
        """What a seeded batch's pixels are when they leave the loader, as a run records it."""
        return "uint8, scaled on the device" if self.uint8_out else "float32"

    def keep_decoded(self, budget_bytes: int = 256 * 2**20, max_side: int = 64) -> bool:
        """Decode every image of this subset once into one uint8 array (N, H, W, 3) when they
        are small, share one size and fit ``budget_bytes`` (CIFAR's 50,000 training images:
        150 MB), so the data workers crop and flip decoded pixels instead of opening and
        decoding a JPEG per sample. The images and so every augmented sample are unchanged.
        Returns whether it did; a damaged file raises :class:`DataError` here, before any
        training starts."""
        if not self.indices:
            return False
        first, _ = self.base[self.indices[0]]
        w, h = first.size
        if max(w, h) > max_side or len(self.indices) * w * h * 3 > budget_bytes:
            return False
        pixels = np.empty((len(self.indices), h, w, 3), dtype=np.uint8)
        for k, i in enumerate(self.indices):
            img = first if k == 0 else self.base[i][0]
            if img.size != (w, h):
                return False
            pixels[k] = np.asarray(img.convert("RGB"), dtype=np.uint8)
        self.decoded = pixels
        return True

    def __len__(self) -> int:
        return len(self.indices)

    def _image(self, index: int) -> tuple[Image.Image, int]:
        if self.decoded is not None:
            return Image.fromarray(self.decoded[index], "RGB"), self.targets[index]
        img, label = self.base[self.indices[index]]
        return img, self._label(label)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        img, label = self._image(index)
        if seed is None:
            return self.transform(img), label
        with seeded_rngs():
            seed_sample(seed)
            out = self.transform(img)
        return out, label

    def __getitems__(self, items: Sequence[int | tuple[int, int]],
                     ) -> list[tuple[torch.Tensor, int]]:
        """A whole batch (what ``DataLoader`` calls when the dataset has this method): the same
        samples bit for bit as ``[self[i] for i in items]``. The random-number state is
        saved and restored once per batch instead of once per sample, and the pixels of the
        batch are scaled to [-1, 1] in one tensor operation (:meth:`ToSignedTensor.batch`).
        Decoded images with only an Inception crop and flip (the study's 32 px loader) are
        also cropped and resized together (:meth:`_crop_batch`); otherwise each sample's PIL
        steps run after its seed (``benchmarks/training_loop.py`` times the loader)."""
        steps = getattr(self.transform, "transforms", None)
        if not steps or not isinstance(steps[-1], ToSignedTensor) or \
                not all(isinstance(i, tuple) for i in items):
            return [self[i] for i in items]
        pil_steps, to_tensor = steps[:-1], steps[-1]
        crop = self._batched_crop()
        if crop is not None:
            return self._crop_batch(items, crop, to_tensor)
        images, labels = [], []
        with seeded_rngs():
            for index, seed in items:
                img, label = self._image(index)
                seed_sample(seed)
                for step in pil_steps:
                    img = step(img)
                images.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
                labels.append(label)
        if len({a.shape for a in images}) > 1:  # no common size (a transform without a crop)
            return [(to_tensor.array(a), y) for a, y in zip(images, labels, strict=True)]
        batch = self._finish(torch.from_numpy(np.stack(images)), to_tensor)
        return list(zip(batch.unbind(0), labels, strict=True))

    def _finish(self, pixels: torch.Tensor, to_tensor: ToSignedTensor) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 -> the batch handed over: scaled float32, or laid out as
        uint8 when :meth:`hand_over_uint8` is on."""
        return to_tensor.layout(pixels) if self.uint8_out else to_tensor.batch(pixels)

    def inception_crop(self, max_side: int | None = MAX_OUTPUT_SIDE,
                       ) -> BatchedInceptionCrop | None:
        """This subset's augmentation as a :class:`BatchedInceptionCrop` when it is an
        Inception crop (and flip) before the scaling to [-1, 1], else None (also for outputs
        larger than ``max_side``; None: any size)."""
        steps = getattr(self.transform, "transforms", None)
        if not steps or not isinstance(steps[-1], ToSignedTensor):
            return None
        return BatchedInceptionCrop.of(steps[:-1], max_side)

    def _batched_crop(self) -> BatchedInceptionCrop | None:
        """The batched form of this subset's augmentation when its images are decoded."""
        return self.inception_crop() if self.decoded is not None else None

    def fetch_form(self) -> str:
        """How a seeded batch is made, as a run records it: ``"batched-crop"`` (decoded
        pixels cropped and resized together, :meth:`_crop_batch`) or ``"per-sample"``."""
        return "batched-crop" if self._batched_crop() is not None else "per-sample"

    def _crop_batch(self, items: Sequence[tuple[int, int]], crop: BatchedInceptionCrop,
                    to_tensor: ToSignedTensor) -> list[tuple[torch.Tensor, int]]:
        """Decoded images with only an Inception crop and flip before the scaling: each
        sample's draws after its seed, then the pixels of the whole batch at once
        (:mod:`mixer_lib.batch_augment`), the same samples bit for bit."""
        height, width = self.decoded.shape[1:3]
        with seeded_rngs():
            draws = []
            for _, seed in items:
                seed_sample(seed)
                draws.append(crop.draw(height, width))
        indices = [index for index, _ in items]
        pixels = crop.apply(torch.from_numpy(self.decoded[indices]), draws)
        batch = self._finish(pixels, to_tensor)
        return list(zip(batch.unbind(0), [self.targets[i] for i in indices], strict=True))


@contextlib.contextmanager
def seeded_rngs() -> Iterator[None]:
    """Python's and torch's CPU random state saved on entry and restored on exit, so seeding
    samples inside leaves the caller's random streams as they were."""
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):  # the CPU generator only
        yield
    random.setstate(state)


def seed_sample(seed: int) -> None:
    """Seed the generators a sample's transforms draw from. The CPU generator only:
    ``torch.manual_seed`` would also seed every accelerator backend, ~100x the cost per
    sample, for transforms that run on the CPU."""
    torch.default_generator.manual_seed(seed)
    random.seed(seed)


def sample_files(ds: TransformedSubset) -> list[str]:
    """The image file of each sample of ``ds`` (datasets that keep ``samples``)."""
    samples = getattr(ds.base, "samples", None)
    if samples is None:
        raise DataError(f"{type(ds.base).__name__} does not list its image files")
    return [samples[i][0] for i in ds.indices]


@dataclass(frozen=True)
class DataConfig:
    """What data a run uses. ``train_limit``/``eval_limit``: class-balanced seeded subsets."""

    dataset: str = "cifar10-jpeg"
    root: str | None = None
    img_size: int = 224
    train_limit: int | None = None
    eval_limit: int | None = None
    seed: int = 0
    crop_pct: float = 1.0
    randaugment: tuple[int, int] | None = None
    download: bool = False
    permutation: str = "none"  # paper Section 3.4: none, patch_pixel or global
    permutation_patch: int = 4
    holdout_dev: bool = False  # "train" leaves out the dev ("val") slice
    classes: tuple[int, ...] | None = None  # a class subset, relabelled 0..k-1
    flip: bool = True  # random horizontal flip in training
    keep_decoded: bool = True  # small images decoded once (TransformedSubset.keep_decoded)


def build_split(cfg: DataConfig, split: str, augment: bool = True) -> TransformedSubset:
    """``split`` in train / val / test, preprocessed as the paper does.

    "val" is the dev slice held out of the training split to choose hyper-parameters (ViT
    App. B.1.1: 2% CIFAR, 10% Pets and Flowers, 1% ImageNet; :func:`recipes.dev_fraction`),
    chosen by a fixed seeded permutation so it is class-mixed. "train" is the whole training
    split, or the training split less the dev slice when ``cfg.holdout_dev``; with
    ``augment=False`` its images are pre-processed as for evaluation (a frozen-feature probe).
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    spec = spec_for(cfg.dataset)
    base = base_dataset(cfg.dataset, "test" if split == "test" else "train", cfg.root,
                        cfg.download)
    targets = dataset_targets(base)
    if split == "test":
        pool = list(range(len(targets)))
    else:
        perm = np.random.default_rng(12345).permutation(len(targets)).tolist()
        n_val = int(round(dev_fraction(spec.name) * len(targets)))
        if split == "val" and n_val == 0:
            raise DataError(f"{spec.name}: the dev slice of {len(targets)} training images is "
                            f"empty; use split='test'")
        if split == "val":
            pool = sorted(perm[len(perm) - n_val:])
        elif cfg.holdout_dev:
            pool = sorted(perm[:len(perm) - n_val])
        else:
            pool = list(range(len(targets)))
    if cfg.classes is not None:
        known = set(targets)
        if not set(cfg.classes) <= known:
            raise DataError(f"classes {list(cfg.classes)}: {spec.name} has classes "
                            f"0..{max(known)}")
        wanted = set(cfg.classes)
        pool = [i for i in pool if targets[i] in wanted]
    limit = cfg.train_limit if split == "train" else cfg.eval_limit
    sub = balanced_subset([targets[i] for i in pool], limit, cfg.seed)
    transform = (train_transform(cfg.img_size, cfg.randaugment, cfg.flip)
                 if split == "train" and augment else eval_transform(cfg.img_size, cfg.crop_pct))
    if cfg.permutation != "none":
        transform = T.Compose([transform, FixedPermutation(cfg.permutation, cfg.img_size,
                                                           cfg.permutation_patch)])
    out = TransformedSubset(base, [pool[i] for i in sub], transform, cfg.classes)
    if cfg.keep_decoded:
        out.keep_decoded()
    return out
