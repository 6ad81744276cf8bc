"""Datasets and the paper's preprocessing (fine-tuning protocol of the official vit_jax code).

* train: Inception-style random crop (area 5%-100%, aspect 3/4-4/3, as
  ``tf.image.sample_distorted_bounding_box`` in ``vit_jax/input_pipeline.py``), resized to
  the target resolution, random horizontal flip;
* eval: resize to the target resolution (``crop_pct=1``, the official code's plain resize;
  ``crop_pct<1`` gives resize + center crop, the timm/ImageNet habit);
* pixels scaled to [-1, 1] by ``(x - 127.5) / 127.5``, what the released checkpoints expect.

One data root: the ``root`` argument, else ``$MIXER_DATA_ROOT``, else ``./data``.
"""

from __future__ import annotations

import math
import os
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import datasets as tvd
from torchvision import transforms as T

from mixer_lib import cifar
from mixer_lib.filelock import exclusive
from mixer_lib.permute import FixedPermutation
from mixer_lib.recipes import STANDIN_PREFIX, dev_fraction

MEAN = STD = (0.5, 0.5, 0.5)  # (x/255 - 0.5) / 0.5 == (x - 127.5) / 127.5


class DataError(RuntimeError):
    """Data that is missing, misplaced or unreadable; the message says how to fix it."""


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: where it lives under the data root and how it is split."""

    name: str
    num_classes: int
    folder: str  # sub-folder of the data root
    downloadable: bool
    how_to_get: str  # what to put where when offline


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("cifar10", 10, "cifar10", True,
                "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/ extracted so "
                "that {root}/cifar-10-batches-py/data_batch_1 exists"),
    DatasetSpec("cifar100", 100, "cifar100", True,
                "cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/ extracted so "
                "that {root}/cifar-100-python/train exists"),
    DatasetSpec("pets", 37, "pets", True,
                "images.tar.gz and annotations.tar.gz from "
                "https://www.robots.ox.ac.uk/~vgg/data/pets/ extracted into "
                "{root}/oxford-iiit-pet/ (images/*.jpg, annotations/trainval.txt, test.txt)"),
    DatasetSpec("flowers102", 102, "flowers102", True,
                "102flowers.tgz, imagelabels.mat and setid.mat from "
                "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ into "
                "{root}/flowers-102/ (jpg/*.jpg, imagelabels.mat, setid.mat)"),
    DatasetSpec("imagenet1k", 1000, "imagenet", False,
                "ImageNet-1k (ILSVRC2012) from https://image-net.org as class folders "
                "{root}/train/<wnid>/*.JPEG and {root}/val/<wnid>/*.JPEG, or the archives "
                "ILSVRC2012_img_{{train,val}}.tar + ILSVRC2012_devkit_t12.tar.gz for "
                "torchvision.datasets.ImageNet"),
    DatasetSpec("cifar10-jpeg", 10, "cifar10-jpeg", False,
                "the CIFAR-10 JPEG copy as {root}/train/<class>/*.jpg and "
                "{root}/test/<class>/*.jpg (see shared/data/README.md)"),
)}
SPLITS = ("train", "val", "test")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$MIXER_DATA_ROOT``, else ``./data``."""
    return Path(root or os.environ.get("MIXER_DATA_ROOT") or "data").expanduser()


def spec_for(dataset: str) -> DatasetSpec:
    """The registry entry for ``dataset``; any existing folder path means an ImageFolder."""
    if dataset in DATASETS:
        return DATASETS[dataset]
    if dataset.startswith(STANDIN_PREFIX) and dataset.removeprefix(STANDIN_PREFIX) in DATASETS:
        name = dataset.removeprefix(STANDIN_PREFIX)
        return DatasetSpec(dataset, 0, f"standins/{name}", False,
                           "the dry-run stand-in made by mixer_lib.dryrun.make_standins: class "
                           "folders {root}/train/<class>/* and {root}/test/<class>/*")
    if dataset.startswith("imagefolder:"):
        return DatasetSpec(dataset, 0, dataset.split(":", 1)[1], False,
                           "class folders {root}/train/<class>/* and {root}/test/<class>/*")
    raise DataError(
        f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)} or "
        f"'imagefolder:/path/to/tree' (with train/ and test/ class folders), or "
        f"'standin:<name>' (a dry-run stand-in)"
    )


class ToSignedTensor:
    """PIL image -> float tensor (C, H, W) in [-1, 1]: ``(x / 255 - 0.5) / 0.5``, the official
    input scaling. The same operations in the same order as torchvision's ``ToTensor()`` then
    ``Normalize(MEAN, STD)``, so bit for bit the same values, at about a third of their cost
    per image (which the data workers of a 2-core CPU share with the model)."""

    def __init__(self, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        pixels = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy())
        x = pixels.permute(2, 0, 1).contiguous().float().div_(255)
        return x.sub_(self.mean).div_(self.std)

    def batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float, each image exactly as ``__call__``
        gives it (the same element-wise operations in the same order)."""
        x = pixels.permute(0, 3, 1, 2).contiguous().float().div_(255)
        return x.sub_(self.mean).div_(self.std)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def train_transform(img_size: int, randaugment: tuple[int, int] | None = None,
                    flip: bool = True) -> Callable:
    """Inception crop + flip (+ optional RandAugment(num_ops, magnitude)) -> [-1, 1] tensor."""
    ops: list = [T.RandomResizedCrop(img_size, scale=(0.05, 1.0), ratio=(3 / 4, 4 / 3),
                                     interpolation=T.InterpolationMode.BILINEAR)]
    if flip:
        ops.append(T.RandomHorizontalFlip())
    if randaugment:
        ops.append(T.RandAugment(num_ops=randaugment[0], magnitude=randaugment[1]))
    return T.Compose([*ops, ToSignedTensor()])


def eval_transform(img_size: int, crop_pct: float = 1.0) -> Callable:
    """Resize to ``img_size`` (official) or resize ``img_size/crop_pct`` + center crop."""
    if crop_pct >= 1.0:
        resize = [T.Resize((img_size, img_size), interpolation=T.InterpolationMode.BILINEAR)]
    else:
        resize = [T.Resize(int(math.floor(img_size / crop_pct)),
                           interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(img_size)]
    return T.Compose([*resize, ToSignedTensor()])


def checked_loader(path: str) -> Image.Image:
    """PIL loader that names the file when an image cannot be read."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise DataError(
            f"cannot read image file {path} ({type(err).__name__}: {err}). The file is "
            f"corrupt or not an image: replace it with a valid copy or delete it."
        ) from err


def _image_folder(path: Path, spec: DatasetSpec, root: Path) -> tvd.ImageFolder:
    if not path.is_dir():
        raise DataError(
            f"{spec.name}: folder {path} not found under data root {root}. Put "
            + spec.how_to_get.format(root=root / spec.folder)
            + " or set MIXER_DATA_ROOT / the data_root parameter to the folder that holds it."
        )
    try:
        return tvd.ImageFolder(str(path), loader=checked_loader)
    except (FileNotFoundError, RuntimeError) as err:
        raise DataError(f"{spec.name}: {path} is not a class-folder tree ({err})") from err


def _torchvision(spec: DatasetSpec, root: Path, train: bool, download: bool) -> Dataset:
    base = root / spec.folder
    existed = base.exists()
    try:
        return _torchvision_dataset(spec, base, train, download)
    except Exception as err:  # noqa: BLE001 - torchvision raises many types here
        if not existed and base.is_dir() and not any(
                p.is_file() and not p.name.endswith(".lock") for p in base.rglob("*")):
            shutil.rmtree(base)  # a failed download leaves no empty folders behind
        raise DataError(
            f"{spec.name} not found or incomplete under {base}"
            f"{' and the download failed (offline?)' if download else ''}: {err}. Put "
            + spec.how_to_get.format(root=base)
            + ", or set MIXER_DATA_ROOT / data_root to the folder that holds it."
        ) from err


def _torchvision_dataset(spec: DatasetSpec, base: Path, train: bool, download: bool) -> Dataset:
    """The dataset object for ``spec`` (may download into ``base``). CIFAR is read from its
    python batches by :mod:`mixer_lib.cifar`; Pets and Flowers by torchvision, whose download
    runs under a lock so that concurrent processes fetch it once."""
    if spec.name in cifar.SPECS:
        if download:
            cifar.fetch(spec.name, base)
        return cifar.CifarBatches(spec.name, base, train)
    if download:
        with exclusive(base.parent / f".{spec.folder}.download.lock", f"fetching {spec.name}"):
            return _torchvision_vgg(spec, base, train, download)
    return _torchvision_vgg(spec, base, train, download)


def _torchvision_vgg(spec: DatasetSpec, base: Path, train: bool, download: bool) -> Dataset:
    if spec.name == "pets":
        return tvd.OxfordIIITPet(str(base), split="trainval" if train else "test",
                                 download=download)
    if spec.name == "flowers102":
        if train:  # the paper (BiT protocol) trains on train + val
            return torch.utils.data.ConcatDataset([
                tvd.Flowers102(str(base), split=s, download=download)
                for s in ("train", "val")])
        return tvd.Flowers102(str(base), split="test", download=download)
    raise AssertionError(spec.name)


def base_dataset(dataset: str, split: str, root: str | os.PathLike | None = None,
                 download: bool = False) -> Dataset:
    """The raw dataset (PIL images, int labels) for ``split`` in train/test ("val" comes from
    :func:`build_split`)."""
    spec, root = spec_for(dataset), data_root(root)
    train = split == "train"
    if spec.name.startswith("imagefolder:"):
        folder = Path(spec.folder)
        return _image_folder(folder / ("train" if train else "test"), spec, folder)
    if spec.name == "cifar10-jpeg" or spec.name.startswith(STANDIN_PREFIX):
        return _image_folder(root / spec.folder / ("train" if train else "test"), spec, root)
    if spec.name == "imagenet1k":
        base = root / spec.folder
        if (base / "meta.bin").exists() or (base / "ILSVRC2012_devkit_t12.tar.gz").exists():
            # torchvision unpacks the archives on first use: one process at a time
            with exclusive(base / ".extract.lock", "unpacking the ImageNet archives"):
                return tvd.ImageNet(str(base), split="train" if train else "val",
                                    loader=checked_loader)
        return _image_folder(base / ("train" if train else "val"), spec, root)
    return _torchvision(spec, root, train, download)


# Stand-ins a book chapter may use when the requested dataset cannot be had (offline).
OFFLINE_STAND_INS = {"cifar10": "cifar10-jpeg"}


def resolve_dataset(dataset: str, root: str | os.PathLike | None = None,
                    download: bool = False, stand_in: bool = True) -> tuple[str, str | None]:
    """The dataset to run on, and a note when it is not the one requested.

    ``dataset`` itself when its files are there (or ``download`` fetches them); for a dataset
    with an offline stand-in (CIFAR-10 -> the JPEG copy under the same data root) the stand-in
    when the original cannot be had and ``stand_in`` allows it (the paper profile never
    substitutes). Anything else raises the dataset's :class:`DataError`.
    """
    spec_for(dataset)  # unknown names fail here, with the list of known ones
    substitute = OFFLINE_STAND_INS.get(dataset) if stand_in else None
    if substitute is None:
        if not stand_in:  # no substitute wanted: the dataset is checked (or fetched) now
            base_dataset(dataset, "test", root, download=download)
        return dataset, None
    try:
        base_dataset(dataset, "test", root, download=download)
        return dataset, None
    except DataError as err:
        folder = data_root(root) / DATASETS[substitute].folder
        if not folder.is_dir():
            raise
        reason = str(err).split(":")[0]
        return substitute, (f"{dataset} is not available here ({reason}); using the stand-in "
                            f"{substitute!r} from {folder} instead. Results are labelled "
                            f"{substitute} and do not count as {dataset}.")


def dataset_targets(ds: Dataset) -> list[int]:
    """Integer labels of every sample without decoding images."""
    if isinstance(ds, torch.utils.data.ConcatDataset):
        return [t for d in ds.datasets for t in dataset_targets(d)]
    for attr in ("targets", "_labels"):
        if hasattr(ds, attr):
            return [int(t) for t in getattr(ds, attr)]
    raise TypeError(f"cannot read labels of {type(ds).__name__}")


def class_names(ds: Dataset) -> list[str]:
    if isinstance(ds, torch.utils.data.ConcatDataset):
        return class_names(ds.datasets[0])
    names = getattr(ds, "classes", None)
    if names is None:
        return [str(i) for i in range(max(dataset_targets(ds)) + 1)]
    return [n if isinstance(n, str) else n[0] for n in names]


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
        with _seeded_rngs():
            _seed_sample(seed)
            out = self.transform(img)
        return out, label

    def __getitems__(self, items: Sequence[int | tuple[int, int]],
                     ) -> list[tuple[torch.Tensor, int]]:
        """A whole batch (what ``DataLoader`` calls when the dataset has this method): the same
        samples bit for bit as ``[self[i] for i in items]``, with the per-sample work cut to
        the seeded PIL crop and flip. The random-number state is saved and restored once per
        batch instead of once per sample, and the pixels of the batch are scaled to [-1, 1]
        in one tensor operation (:class:`ToSignedTensor` on ``(B, 3, H, W)``), which made the
        study's 32 px loader about twice as cheap (``benchmarks/training_loop.py``)."""
        steps = getattr(self.transform, "transforms", None)
        if not steps or not isinstance(steps[-1], ToSignedTensor) or \
                not all(isinstance(i, tuple) for i in items):
            return [self[i] for i in items]
        pil_steps, to_tensor = steps[:-1], steps[-1]
        images, labels = [], []
        with _seeded_rngs():
            for index, seed in items:
                img, label = self._image(index)
                _seed_sample(seed)
                for step in pil_steps:
                    img = step(img)
                images.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
                labels.append(label)
        if len({a.shape for a in images}) > 1:  # no common size (a transform without a crop)
            return [(to_tensor(Image.fromarray(a, "RGB")), y)
                    for a, y in zip(images, labels, strict=True)]
        batch = to_tensor.batch(torch.from_numpy(np.stack(images)))
        return list(zip(batch.unbind(0), labels, strict=True))


class _seeded_rngs:
    """Python's and torch's CPU random state saved on entry and restored on exit, so seeding
    samples inside leaves the caller's random streams as they were."""

    def __enter__(self) -> None:
        self.state = random.getstate()
        self.fork = torch.random.fork_rng(devices=[])  # the CPU generator only
        self.fork.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.fork.__exit__(*exc)
        random.setstate(self.state)


def _seed_sample(seed: int) -> None:
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


def build_split(cfg: DataConfig, split: str) -> TransformedSubset:
    """``split`` in train / val / test, preprocessed as the paper does.

    "val" is the dev slice held out of the training split to choose hyper-parameters (ViT
    App. B.1.1: 2% CIFAR, 10% Pets and Flowers, 1% ImageNet; :func:`recipes.dev_fraction`),
    chosen by a fixed seeded permutation so it is class-mixed. "train" is the whole training
    split, or the training split less the dev slice when ``cfg.holdout_dev``.
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
    transform = (train_transform(cfg.img_size, cfg.randaugment, cfg.flip) if split == "train"
                 else eval_transform(cfg.img_size, cfg.crop_pct))
    if cfg.permutation != "none":
        transform = T.Compose([transform, FixedPermutation(cfg.permutation, cfg.img_size,
                                                           cfg.permutation_patch)])
    out = TransformedSubset(base, [pool[i] for i in sub], transform, cfg.classes)
    if cfg.keep_decoded:
        out.keep_decoded()
    return out


class EpochSampler(Sampler[tuple[int, int]]):
    """Seeded per-epoch shuffling that can start mid-run: yields ``(index, item_seed)`` for
    global sample positions ``start, start+1, ...``. Same seed -> same order and augmentation,
    whether or not the run was interrupted."""

    def __init__(self, n: int, seed: int, start: int = 0, total: int | None = None,
                 fixed_order: bool = False) -> None:
        self.n, self.seed, self.start, self.total = n, seed, start, total
        self.fixed_order = fixed_order  # one seeded order for every epoch (no reshuffle)

    def _perm(self, epoch: int) -> list[int]:
        epoch = 0 if self.fixed_order else epoch
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pos = self.start
        epoch, perm = -1, []
        while self.total is None or pos < self.total:
            if pos // self.n != epoch:
                epoch = pos // self.n
                perm = self._perm(epoch)
            yield perm[pos % self.n], (self.seed * 1_000_003 + pos) % (2**63)
            pos += 1

    def __len__(self) -> int:
        return (self.total - self.start) if self.total is not None else 2**62


def loader_kwargs(device: torch.device, num_workers: int | None) -> dict:
    """Workers, pinned memory and persistent workers so data keeps up with a GPU. On a CPU
    the default is half the cores (at most 2): on 2 cores one worker keeps the loop at ~90%
    of the model-alone rate, two at ~82% (benchmarks/training_loop.py)."""
    if num_workers is None:  # on a CPU the workers share the cores with the model
        cpus = os.cpu_count() or 1
        num_workers = min(8, cpus) if device.type == "cuda" else min(2, max(1, cpus // 2))
    kw: dict = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers > 0:
        kw.update(persistent_workers=True, prefetch_factor=4)
    return kw


def make_eval_loader(ds: Dataset, batch_size: int, device: torch.device,
                     num_workers: int | None = None) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False,
                      **loader_kwargs(device, num_workers))
