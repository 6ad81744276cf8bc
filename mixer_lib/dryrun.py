"""Stand-ins for a dry run of the ``paper`` profile on a machine without its data or weights.

* :func:`make_standins` builds tiny stand-ins for the paper's five fine-tuning datasets from
  the real CIFAR-10 JPEG copy, as class folders of symbolic links (no image is copied), under
  ``<root>/standins/<name>/{train,test}``; the runs name them ``standin:<name>``.
* :func:`write_standin_checkpoint` writes a randomly initialised model in the official
  ``.npz`` layout (``save_npz``) under a released checkpoint's file name into a cache folder
  of its own, so the catalogue resolves the released name to a file already in the cache.

Nothing made here is a result: every record of a stand-in dataset is flagged ``dry_run`` and
the book labels its numbers "dry run". The stand-in cache must never be the user's cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mixer_lib.checkpoints import checkpoint_info, save_npz
from mixer_lib.datasets import DATASETS, data_root
from mixer_lib.model import create_model
from mixer_lib.recipes import STANDIN_PREFIX

PAPER_DATASETS = ("cifar10", "cifar100", "pets", "flowers102", "imagenet1k")


def make_standins(target: str | os.PathLike, source: str | os.PathLike | None = None,
                  train_per_class: int = 30, test_per_class: int = 5,
                  names: tuple[str, ...] = PAPER_DATASETS) -> dict[str, str]:
    """Link a few CIFAR-10 JPEGs per class into a stand-in tree for each of ``names``.

    Each stand-in takes its images from another slice of the CIFAR-10 files, so the five are
    not the same images. Returns ``{name: "standin:<name>"}``. Idempotent.
    """
    src = data_root(source) / DATASETS["cifar10-jpeg"].folder
    if not (src / "train").is_dir():
        raise FileNotFoundError(f"the CIFAR-10 JPEG copy is not at {src}; set data_root or "
                                f"MIXER_DATA_ROOT to the folder that holds cifar10-jpeg/")
    out = {}
    for k, name in enumerate(names):
        base = Path(target) / "standins" / name
        n_val = 0
        for split, per_class in (("train", train_per_class), ("test", test_per_class)):
            for cls in sorted(p.name for p in (src / split).iterdir() if p.is_dir()):
                files = sorted((src / split / cls).glob("*.jpg"))
                chosen = files[k * per_class:(k + 1) * per_class]
                folder = base / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                for f in chosen:
                    link = folder / f.name
                    if name == "imagenet1k" and split == "test":  # ImageNet val file names
                        n_val += 1
                        link = folder / f"ILSVRC2012_val_{n_val:08d}.JPEG"
                    if not link.is_symlink():
                        link.symlink_to(f.resolve())
        (base / "STAND-IN.txt").write_text(
            f"Dry-run stand-in for {name}: {train_per_class} training and {test_per_class} "
            f"test images per class, links to real CIFAR-10 JPEGs in {src}. Not {name}.\n")
        out[name] = STANDIN_PREFIX + name
    return out


def write_standin_real_labels(standin_root: str | os.PathLike,
                              cache_dir: str | os.PathLike) -> Path:
    """A stand-in ``real.json`` in ``cache_dir`` whose label sets are the stand-in ImageNet
    test images' own labels (50,000 entries, the others empty), so the ReaL path runs."""
    import json

    test = Path(standin_root) / "standins" / "imagenet1k" / "test"
    labels: list[list[int]] = [[] for _ in range(50_000)]
    for k, cls in enumerate(sorted(p.name for p in test.iterdir() if p.is_dir())):
        for f in (test / cls).iterdir():
            labels[int(f.stem.rsplit("_", 1)[1]) - 1] = [k]
    path = Path(cache_dir) / "real.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(labels))
    return path


def write_standin_checkpoint(variant: str, weights: str, cache_dir: str | os.PathLike,
                             img_size: int = 224, seed: int = 0) -> Path:
    """A random ``variant`` in the official layout, under the released file name of
    (variant, weights), in ``cache_dir`` (reused when present)."""
    info = checkpoint_info(variant, weights)
    path = Path(cache_dir) / info.filename
    if path.exists():
        return path
    torch.manual_seed(seed)
    model = create_model(variant, num_classes=info.num_classes, img_size=img_size)
    return save_npz(model, path)
