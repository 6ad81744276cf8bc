"""CIFAR-10 and CIFAR-100 in their original python-pickle format: fetch once, read.

Layout (the one torchvision uses, so an existing torchvision download is found as is)::

    <root>/cifar10/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    <root>/cifar100/cifar-100-python/{train, test, meta}

:func:`fetch` downloads the archive through the checkpoint downloader (resumable, verified,
one process at a time per file, atomic), checks the official archive's MD5, and extracts it
into a temporary folder that is renamed into place, under a lock, so torchrun's ranks or two
runs sharing a data root never see half an extraction. ``$MIXER_DATA_MIRROR`` replaces the
official host (an institute mirror, or a test's local server); a mirror's archive is not
MD5-checked (its content is), since a mirror may serve a re-packed copy.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from mixer_lib.checkpoints import download
from mixer_lib.filelock import exclusive


@dataclass(frozen=True)
class CifarSpec:
    archive: str
    md5: str  # of the official archive
    folder: str  # what the archive extracts to
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    meta_file: str
    names_key: str


OFFICIAL_HOST = "https://www.cs.toronto.edu/~kriz"
SPECS = {
    "cifar10": CifarSpec("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                         "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                         ("test_batch",), "labels", "batches.meta", "label_names"),
    "cifar100": CifarSpec("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                          "cifar-100-python", ("train",), ("test",), "fine_labels", "meta",
                          "fine_label_names"),
}


class CifarError(RuntimeError):
    """CIFAR files missing, incomplete or not in the python-pickle format."""


def archive_url(name: str) -> str:
    """The archive's URL: ``$MIXER_DATA_MIRROR/<archive>`` when set, else the official one."""
    host = os.environ.get("MIXER_DATA_MIRROR", "").rstrip("/") or OFFICIAL_HOST
    return f"{host}/{SPECS[name].archive}"


def present(name: str, base: Path) -> bool:
    """Every file of ``name``'s batches is under ``base`` (e.g. ``<root>/cifar10``)."""
    spec = SPECS[name]
    folder = base / spec.folder
    return all((folder / f).is_file()
               for f in (*spec.train_files, *spec.test_files, spec.meta_file))


def _md5(path: Path) -> str:
    """The MD5 the dataset's authors publish for their archive."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def fetch(name: str, base: Path, progress: bool = True) -> Path:
    """Download and extract ``name`` into ``base`` unless it is there; returns the folder of
    its batches. Raises :class:`~mixer_lib.download.CheckpointDownloadError` offline."""
    spec = SPECS[name]
    if present(name, base):
        return base / spec.folder
    base.mkdir(parents=True, exist_ok=True)
    url = archive_url(name)
    archive = download(spec.archive, base, url=url, progress=progress, timeout=60)
    with exclusive(base / ".extract.lock", f"extracting {spec.archive}"):
        if present(name, base):  # another process extracted it while this one waited
            return base / spec.folder
        if url.startswith(OFFICIAL_HOST) and _md5(archive) != spec.md5:
            raise CifarError(f"{archive} does not match the official MD5 {spec.md5}; delete "
                             f"it and download again")
        with tempfile.TemporaryDirectory(dir=base, prefix=".extract-") as tmp:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            if not present(name, Path(tmp)):
                raise CifarError(f"{archive} does not hold {spec.folder}/ with "
                                 f"{', '.join(spec.train_files + spec.test_files)}")
            target = base / spec.folder
            if target.exists():  # an incomplete earlier copy: kept aside, never deleted
                target.rename(base / f"{spec.folder}.incomplete-{os.getpid()}")
            shutil.move(str(Path(tmp) / spec.folder), str(target))
    return base / spec.folder


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise CifarError(f"cannot read {path} ({err}); delete the folder and download the "
                         f"archive again") from err


class CifarBatches(Dataset):
    """One split of CIFAR-10/100 from the python batches: PIL images and integer labels.

    ``targets`` and ``classes`` as torchvision's datasets have them.
    """

    def __init__(self, name: str, base: str | os.PathLike, train: bool) -> None:
        spec = SPECS[name]
        folder = Path(base) / spec.folder
        if not present(name, Path(base)):
            raise CifarError(f"{name} batches not found under {folder}")
        batches = [_unpickle(folder / f) for f in (spec.train_files if train
                                                   else spec.test_files)]
        try:
            data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
            self.targets = [int(t) for b in batches for t in b[spec.label_key]]
            self.classes = list(_unpickle(folder / spec.meta_file)[spec.names_key])
        except (KeyError, ValueError) as err:
            raise CifarError(f"{folder} is not in the CIFAR python format ({err})") from err
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(self.targets):
            raise CifarError(f"{folder}: expected rows of 3072 bytes, one per label; got "
                             f"{data.shape} for {len(self.targets)} labels")
        self.data = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.data[index]), self.targets[index]
