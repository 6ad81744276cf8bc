"""Figures that stay readable and cheap with ImageNet's 1000 classes."""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np

from mixer_lib.plots import FULL_MATRIX_MAX_CLASSES, confusion_matrix, most_confused
from mixer_lib.records import per_class_rows


def _result(n: int) -> dict:
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 3, (n, n))
    np.fill_diagonal(cm, 40)
    cm[7, 3] = 30  # the most confused pair
    names = [f"class{i}" for i in range(n)]
    if n > 517:
        names[134] = names[517] = "crane"  # ImageNet repeats names
    return {"confusion": cm.tolist(), "class_names": names,
            "per_class": [[i, name, 100.0 * cm[i, i] / cm[i].sum()]
                          for i, name in enumerate(names)]}


def test_thousand_class_figures_are_cheap_and_readable():
    result = _result(1000)
    t0 = time.perf_counter()
    fig = confusion_matrix(result)
    fig.canvas.draw()
    rows = per_class_rows(result)
    elapsed = time.perf_counter() - t0
    assert elapsed < 10, elapsed
    width, height = fig.get_size_inches()
    assert width <= 12 and height <= 12  # not a 350-inch canvas
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0] == "7 class7 -> 3 class3"
    assert len(rows) == 1000 and [r[1] for r in rows].count("crane") == 2
    plt.close(fig)


def test_small_class_counts_keep_the_full_matrix():
    result = _result(10)
    fig = confusion_matrix(result)
    assert len(fig.axes[0].get_xticklabels()) == 10
    assert FULL_MATRIX_MAX_CLASSES >= 10
    plt.close(fig)


def test_most_confused_pairs_skip_the_diagonal():
    cm = np.array([[0.9, 0.1, 0.0], [0.5, 0.5, 0.0], [0.0, 0.2, 0.8]])
    assert most_confused(cm, 2) == [(1, 0, 0.5), (2, 1, 0.2)]


def test_per_class_rows_read_old_records():
    assert per_class_rows({"per_class": {"cat": 50.0, "dog": 25.0}}) == \
        [[0, "cat", 50.0], [1, "dog", 25.0]]


def test_block_units_and_study_units():
    from mixer_lib.model import create_model
    from mixer_lib.plots import block_units, study_units

    model = create_model("Mixer-T/4", num_classes=5, img_size=32)
    fig = block_units(model, -1)
    assert fig._suptitle.get_text().startswith("block 3: first 32 of 64 units (8x8")
    assert "pending" in study_units(None).axes[0].texts[0].get_text()
    w = model.blocks[0].mlp_tokens.fc1.weight.tolist()
    assert len(study_units({"weights": {"0": w}, "grid": 8}).axes) == 32
