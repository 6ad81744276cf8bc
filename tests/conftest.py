"""Shared test fixtures."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import torch

from mixer_lib.model import MODEL_FORM

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """Where the real CIFAR-10 JPEG copy lives (``MIXER_DATA_ROOT`` or ``../shared/data``)."""
    return Path(os.environ.get("MIXER_DATA_ROOT", REPO.parent / "shared" / "data"))


STRICT_ENV = "MIXER_TESTS_STRICT"  # set by .ci/run: what would skip fails instead
BOOK_ENV = "MIXER_BOOK_REQUIRED"  # set by .ci/run: the book tests need the built book


def skip_or_fail(reason: str, required_by: str = STRICT_ENV) -> None:
    """Skip a test whose inputs are missing (``reason`` says which), except when the
    environment variable ``required_by`` is set (CI): there it is a failure."""
    if os.environ.get(required_by):
        pytest.fail(f"{reason} ({required_by}=1: this test may not skip)")
    pytest.skip(reason, allow_module_level=True)


def import_or_skip(module: str, hint: str):
    """``pytest.importorskip`` that fails instead under ``MIXER_TESTS_STRICT=1``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        skip_or_fail(f"{module} does not import ({err}): {hint}")


@pytest.fixture
def cifar_root() -> Path:
    root = shared_data_root()
    if not (root / "cifar10-jpeg" / "train").is_dir():
        skip_or_fail(f"real CIFAR-10 JPEG copy not found under {root} "
                           f"(set MIXER_DATA_ROOT)")
    return root


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


def bench_record(device: str, dtype: str, rates: dict[str, float], preset: str = "claims",
                 mode: str = "eager", form: str = MODEL_FORM, batch: int = 4,
                 commit: str = "a" * 40, date: str = "2026-11-26T01:00:00+00:00") -> dict:
    """A synthetic throughput record (``benchmarks/throughput.py``'s layout): one row per model
    with its inference images/s."""
    return {"preset": preset, "model_form": form, "rows": [
        {"model": m, "infer_img_s": v, "dtype": dtype, "mode": mode, "batch": batch,
         "gflops_fwd": 1.0, "img_size": 224} for m, v in rates.items()],
        "environment": {"device": device, "torch": "2.14.1", "git_commit": commit,
                        "date": date}}
