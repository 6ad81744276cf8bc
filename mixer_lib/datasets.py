"""Where the data comes from: the named datasets, their on-disk formats under the data root,
downloads where allowed, class names and labels.

One data root: the ``root`` argument, else ``$MIXER_DATA_ROOT``, else ``./data``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tvd

from mixer_lib import cifar
from mixer_lib.filelock import exclusive
from mixer_lib.recipes import STANDIN_PREFIX


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


def checked_loader(path: str) -> Image.Image:
    """PIL loader that names the file when an image cannot be read."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise unreadable_image(path, err) from err


def unreadable_image(path: str, err: Exception) -> DataError:
    """The error for an image file that cannot be read, naming it and what to do."""
    return DataError(f"cannot read image file {path} ({type(err).__name__}: {err}). The file "
                     f"is corrupt or not an image: replace it with a valid copy or delete it.")


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
