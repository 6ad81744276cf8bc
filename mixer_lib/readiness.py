"""Is each input of a run here, or can it be fetched? Datasets in the on-disk format their
loader reads (or reachable for ``download``), ImageNet's class folders and the validation
file names ReaL needs, the released checkpoints and the ReaL labels (cached, or reachable).
Each answer is a :class:`Check`: one line of the preflight table (:mod:`mixer_lib.preflight`).
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mixer_lib import cifar
from mixer_lib.checkpoints import CheckpointError, checkpoint_info
from mixer_lib.datasets import DATASETS, data_root, spec_for
from mixer_lib.download import default_cache_dir
from mixer_lib.real import REAL_URL
from mixer_lib.recipes import STANDIN_PREFIX

READY, DOWNLOAD, NOT_READY = "ready", "will download", "NOT READY"
IMAGENET_CLASSES, IMAGENET_VAL_IMAGES = 1000, 50_000


@dataclass(frozen=True)
class Check:
    """One line of the preflight table."""

    item: str
    status: str  # READY, DOWNLOAD or NOT_READY
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != NOT_READY


def reachable(url: str, timeout: float = 5.0) -> str | None:
    """None when ``url`` answers a HEAD request, else why not (offline, 404, ...)."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout)
        return None
    except urllib.error.HTTPError as err:
        return None if err.code in (403, 405) else f"HTTP {err.code}"  # no HEAD: exists
    except (urllib.error.URLError, OSError, ValueError) as err:
        return str(getattr(err, "reason", err))


# ----------------------------------------------------------------------------- GPUs


def _how(name: str, root: Path) -> str:
    spec = spec_for(name)
    return ("put " + spec.how_to_get.format(root=root / spec.folder)
            + ", or set MIXER_DATA_ROOT / data_root to the folder that holds it")


def _files_present(name: str, base: Path) -> bool:
    if name in cifar.SPECS:
        return cifar.present(name, base)
    if name == "pets":
        pet = base / "oxford-iiit-pet"
        return (pet / "images").is_dir() and all(
            (pet / "annotations" / f).is_file() for f in ("trainval.txt", "test.txt"))
    if name == "flowers102":
        fl = base / "flowers-102"
        return (fl / "jpg").is_dir() and all((fl / f).is_file()
                                             for f in ("imagelabels.mat", "setid.mat"))
    if name.startswith((STANDIN_PREFIX, "imagefolder:")) or name == "cifar10-jpeg":
        return all((base / s).is_dir() for s in ("train", "test"))
    return False


DOWNLOAD_URLS = {
    "pets": "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
    "flowers102": "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
}


def dataset_check(name: str, root: str | os.PathLike | None, download: bool) -> list[Check]:
    """``name`` in its loader's format under the data root, or fetchable with download."""
    root = data_root(root)
    if name == "imagenet1k":
        return imagenet_checks(root / DATASETS["imagenet1k"].folder)
    spec = spec_for(name)
    base = root / spec.folder
    item = f"data: {name}"
    if _files_present(name, base):
        return [Check(item, READY, f"{base}")]
    if download and spec.downloadable:
        url = cifar.archive_url(name) if name in cifar.SPECS else DOWNLOAD_URLS[name]
        problem = reachable(url)
        if problem is None:
            return [Check(item, DOWNLOAD, f"not under {base}; {url} answers")]
        return [Check(item, NOT_READY, f"not under {base}, and {url} cannot be reached "
                                       f"({problem})", _how(name, root))]
    fix = _how(name, root) + ("; or pass --download (DOWNLOAD=1) on a machine online"
                              if spec.downloadable else "")
    return [Check(item, NOT_READY, f"not found under {base}", fix)]


_VAL_NAME = re.compile(r"^ILSVRC2012_val_\d{8}\.JPEG$")


def imagenet_checks(base: Path) -> list[Check]:
    """Class folders train/<wnid> and val/<wnid> (1000 each, the same), or the archives
    torchvision.datasets.ImageNet unpacks; validation images named for ReaL."""
    how = _how("imagenet1k", base.parent)
    if (base / "meta.bin").exists() or (base / "ILSVRC2012_devkit_t12.tar.gz").exists():
        have = [p.name for p in base.iterdir()]
        return [Check("data: imagenet1k", READY, f"torchvision ImageNet files under {base} "
                                                 f"({', '.join(sorted(have)[:4])}...)")]
    folders = {}
    for split in ("train", "val"):
        d = base / split
        folders[split] = sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []
    if not folders["train"] or not folders["val"]:
        return [Check("data: imagenet1k", NOT_READY, f"no class folders under {base}/train "
                                                      f"and {base}/val", how)]
    checks = []
    same = folders["train"] == folders["val"]
    status = READY if same and len(folders["train"]) == IMAGENET_CLASSES else NOT_READY
    checks.append(Check("data: imagenet1k class folders", status,
                        f"{len(folders['train'])} train and {len(folders['val'])} val class "
                        f"folders" + ("" if same else ", not the same classes"),
                        "" if status == READY else f"one folder per WordNet id (n01440764, "
                        f"...) in both train/ and val/: {IMAGENET_CLASSES} each"))
    bad, total = [], 0
    for wnid in folders["val"]:
        for entry in os.scandir(base / "val" / wnid):
            total += 1
            if not _VAL_NAME.match(entry.name):
                bad.append(f"val/{wnid}/{entry.name}")
    status = READY if total == IMAGENET_VAL_IMAGES and not bad else NOT_READY
    detail = f"{total} validation images" + (f", {len(bad)} not named ILSVRC2012_val_"
                                              f"NNNNNNNN.JPEG (e.g. {bad[0]})" if bad else "")
    checks.append(Check("data: imagenet1k validation names (ReaL)", status, detail,
                        "" if status == READY else f"the {IMAGENET_VAL_IMAGES:,} validation "
                        f"images under their original names (ReaL labels are matched by file "
                        f"name)"))
    return checks


# ----------------------------------------------------------------------------- weights


def checkpoint_check(variant: str, weights: str, cache: Path | None = None) -> Check:
    """A released checkpoint: in the cache, or reachable for its download."""
    cache = cache or default_cache_dir()
    try:
        info = checkpoint_info(variant, weights)
    except CheckpointError as err:
        return Check(f"checkpoint: {variant} {weights}", NOT_READY, str(err),
                     "use a released (variant, weights) pair")
    item = f"checkpoint: {info.name}"
    path = cache / info.filename
    if path.is_file() and path.stat().st_size > 0:
        return Check(item, READY, f"{path} ({path.stat().st_size / 2**20:.0f} MiB)")
    problem = reachable(info.url)
    if problem is None:
        return Check(item, DOWNLOAD, f"not in {cache}; {info.url} answers")
    gs = info.url.replace("https://storage.googleapis.com/", "gs://")
    return Check(item, NOT_READY, f"not in {cache}, and {info.url} cannot be reached "
                                  f"({problem})",
                 f"fetch it elsewhere (`gsutil cp {gs} .`) and put it at {path}, or set "
                 f"MIXER_CACHE_DIR to the folder that holds {info.filename}")


def real_labels_check(cache: Path | None = None) -> Check:
    cache = cache or default_cache_dir()
    path = cache / "real.json"
    if path.is_file():
        return Check("ReaL labels", READY, str(path))
    problem = reachable(REAL_URL)
    if problem is None:
        return Check("ReaL labels", DOWNLOAD, f"not in {cache}; {REAL_URL} answers")
    return Check("ReaL labels", NOT_READY, f"not in {cache}, and {REAL_URL} cannot be "
                                           f"reached ({problem})",
                 f"download {REAL_URL} elsewhere and put it at {path}")


# ----------------------------------------------------------------------------- runs
