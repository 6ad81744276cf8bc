"""ReaL top-1 (Beyer et al., 2020, "Are we done with ImageNet?"): the paper's second column.

The public label file ``real.json`` lists, for each of the 50,000 ImageNet validation images in
file-name order (``ILSVRC2012_val_00000001.JPEG`` is entry 0), the set of labels the
re-assessment found correct (possibly empty). ReaL top-1 is the share of images with a non-empty
set whose top-1 prediction is in it. The file is downloaded once and cached like the checkpoints.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from mixer_lib.checkpoints import download
from mixer_lib.datasets import DataError

REAL_URL = ("https://raw.githubusercontent.com/google-research/reassessed-imagenet/"
            "master/real.json")
_VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.")


def real_labels(cache_dir: str | os.PathLike | None = None,
                progress: bool = True) -> list[list[int]]:
    """The ReaL label sets (downloaded into the cache on first use; a clear error offline)."""
    path = download("real.json", cache_dir, url=REAL_URL, progress=progress)
    labels = json.loads(Path(path).read_text())
    if not isinstance(labels, list) or len(labels) != 50_000:
        raise ValueError(f"{path} is not the ReaL label file (expected a list of 50,000 label "
                         f"lists); delete it and download {REAL_URL} again")
    return labels


def val_index(path: str | os.PathLike) -> int:
    """0-based index of an ImageNet validation file from its name."""
    match = _VAL_NAME.search(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not named like an ImageNet validation image "
                         f"(ILSVRC2012_val_NNNNNNNN.JPEG); ReaL labels need those names")
    return int(match.group(1)) - 1


def check_real_files(files: Sequence[str | os.PathLike]) -> None:
    """Raise :class:`~mixer_lib.datasets.DataError` unless every file is named like an ImageNet
    validation image (run before training, so a misnamed folder costs no GPU time)."""
    bad = [str(f) for f in files if not _VAL_NAME.search(Path(f).name)]
    if bad:
        raise DataError(
            f"{len(bad)} of {len(files)} ImageNet validation images are not named "
            f"ILSVRC2012_val_NNNNNNNN.JPEG (e.g. {bad[0]}); ReaL top-1 needs the original "
            f"file names. Restore them (torchvision.datasets.ImageNet keeps them), or score "
            f"on another split.")


def real_top1(predictions: Sequence[int], files: Sequence[str | os.PathLike],
              labels: Sequence[Sequence[int]]) -> tuple[float, int]:
    """ReaL top-1 in percent over the images among ``files`` that have ReaL labels, and how
    many such images there were."""
    if len(predictions) != len(files):
        raise ValueError(f"{len(predictions)} predictions for {len(files)} files")
    hits = counted = 0
    for pred, f in zip(predictions, files, strict=True):
        correct = labels[val_index(f)]
        if correct:
            counted += 1
            hits += int(pred) in correct
    if counted == 0:
        raise ValueError("none of the evaluated images has a ReaL label")
    return 100.0 * hits / counted, counted
