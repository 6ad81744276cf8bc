"""Measurements on trained weights (paper Section 3.5, Figure 5)."""

from __future__ import annotations

import torch


def neighbour_correlation(weight: torch.Tensor, grid: int) -> float:
    """Spatial smoothness of token-mixing units: the Pearson correlation between the weights
    of horizontally and vertically adjacent patches, pooled over all units.

    ``weight``: a token-mixing ``fc1.weight`` of shape ``(D_S, S)`` with ``S = grid**2``
    (row-major patch order, as the stem produces). About 0 for an untrained (i.i.d.) layer;
    positive when units are local/smooth detectors like the paper's Figure 5.
    """
    if weight.ndim != 2 or weight.shape[1] != grid * grid:
        raise ValueError(f"expected a (D_S, {grid * grid}) token-mixing weight for a "
                         f"{grid}x{grid} grid, got shape {tuple(weight.shape)}")
    w = weight.detach().float().reshape(-1, grid, grid)
    w = w - w.mean(dim=(1, 2), keepdim=True)  # centre each unit
    pairs = [(w[:, :, :-1], w[:, :, 1:]), (w[:, :-1, :], w[:, 1:, :])]
    a = torch.cat([p[0].reshape(-1) for p in pairs])
    b = torch.cat([p[1].reshape(-1) for p in pairs])
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))
