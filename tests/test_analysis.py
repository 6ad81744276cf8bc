"""Weight analysis helpers."""

from __future__ import annotations

import pytest
import torch

from mixer_lib.analysis import neighbour_correlation


def test_neighbour_correlation_separates_smooth_from_random_units():
    torch.manual_seed(0)
    grid = 8
    random = torch.randn(64, grid * grid)
    yy, xx = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    centres = torch.randint(0, grid, (64, 2))
    blobs = torch.stack([torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0).reshape(-1)
                         for cy, cx in centres.tolist()])
    assert abs(neighbour_correlation(random, grid)) < 0.1
    assert neighbour_correlation(blobs, grid) > 0.5
    # a checkerboard is anti-correlated with its neighbours
    checker = ((yy + xx) % 2 * 2 - 1).float().reshape(1, -1)
    assert neighbour_correlation(checker, grid) < -0.9


def test_neighbour_correlation_rejects_wrong_grid():
    with pytest.raises(ValueError, match="7x7 grid"):
        neighbour_correlation(torch.zeros(4, 64), 7)


def test_locality_and_stats_tables():
    from mixer_lib.analysis import locality_rows, stats_rows, token_mixing_stats
    from mixer_lib.model import create_model

    model = create_model("Mixer-T/4", num_classes=5, img_size=32)
    header, rows = locality_rows(model)
    assert header[1] == "neighbour correlation" and [r[0] for r in rows] == [0, 1, 2, 3]
    header, rows = stats_rows(token_mixing_stats(model))
    assert len(rows) == 4 and header[3] == "local energy"
