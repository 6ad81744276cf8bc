"""Measurements on trained weights (paper Section 3.5, Figure 5)."""

from __future__ import annotations

import torch
from torch import nn


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


def local_energy(weight: torch.Tensor, grid: int, radius: int = 1) -> float:
    """How local token-mixing units are: the share of each unit's squared weight that lies
    within ``radius`` patches (Chebyshev distance) of its largest-magnitude patch, averaged
    over units. For i.i.d. weights about (2r+1)^2 / S; 1 for a unit confined to a
    neighbourhood. ``weight``: ``(D_S, S)`` with ``S = grid**2``, row-major patches."""
    if weight.ndim != 2 or weight.shape[1] != grid * grid:
        raise ValueError(f"expected a (D_S, {grid * grid}) token-mixing weight for a "
                         f"{grid}x{grid} grid, got shape {tuple(weight.shape)}")
    energy = weight.detach().float().square()
    peak = energy.argmax(dim=1)
    rows, cols = torch.arange(grid).repeat_interleave(grid), torch.arange(grid).repeat(grid)
    near = ((rows[None] - rows[peak][:, None]).abs() <= radius) & \
        ((cols[None] - cols[peak][:, None]).abs() <= radius)
    return float(((energy * near).sum(1) / energy.sum(1).clamp_min(1e-12)).mean())


def token_mixing_stats(model, seed: int = 0) -> dict:
    """Per block: neighbour correlation and local energy of the first token-mixing layer,
    for ``model`` and for a fresh initialisation of the same configuration (the baseline)."""
    from mixer_lib.model import create_model

    torch.manual_seed(seed)
    fresh = create_model(model.cfg)
    grid = model.cfg.grid_size
    blocks = []
    for trained, init in zip(model.blocks, fresh.blocks, strict=True):
        w, w0 = trained.mlp_tokens.fc1.weight, init.mlp_tokens.fc1.weight
        blocks.append({"neighbour_correlation": neighbour_correlation(w, grid),
                       "init_neighbour_correlation": neighbour_correlation(w0, grid),
                       "local_energy": local_energy(w, grid),
                       "init_local_energy": local_energy(w0, grid)})
    return {"grid": grid, "blocks": blocks}


def locality_rows(model: nn.Module, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """Per block, the neighbour correlation of the first token-mixing layer's weights
    (:func:`neighbour_correlation`) against a freshly initialised model of the same shape."""
    from mixer_lib.model import create_model

    torch.manual_seed(seed)
    fresh, grid = create_model(model.cfg), model.cfg.grid_size
    rows = [[b, f"{neighbour_correlation(model.blocks[b].mlp_tokens.fc1.weight, grid):+.3f}",
             f"{neighbour_correlation(fresh.blocks[b].mlp_tokens.fc1.weight, grid):+.3f}"]
            for b in range(model.cfg.num_blocks)]
    return ["block", "neighbour correlation", "fresh init"], rows


def stats_rows(stats: dict) -> tuple[list[str], list[list[str]]]:
    """A study record's token-mixing statistics (:func:`token_mixing_stats`) as a table."""
    return (["block", "neighbour correlation", "fresh init", "local energy", "fresh init"],
            [[i, f"{b['neighbour_correlation']:+.3f}", f"{b['init_neighbour_correlation']:+.3f}",
              f"{b['local_energy']:.3f}", f"{b['init_local_energy']:.3f}"]
             for i, b in enumerate(stats["blocks"])])
