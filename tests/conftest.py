"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """Where the real CIFAR-10 JPEG copy lives (``MIXER_DATA_ROOT`` or ``../shared/data``)."""
    return Path(os.environ.get("MIXER_DATA_ROOT", REPO.parent / "shared" / "data"))


@pytest.fixture
def cifar_root() -> Path:
    root = shared_data_root()
    if not (root / "cifar10-jpeg" / "train").is_dir():
        pytest.skip(f"real CIFAR-10 JPEG copy not found under {root} (set MIXER_DATA_ROOT)")
    return root


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
