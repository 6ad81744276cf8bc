"""Figures for the book (matplotlib). Each function returns the Figure it draws."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch


def read_metrics(path: str | Path) -> tuple[list[dict], list[dict]]:
    """Split ``metrics.jsonl`` into training records and evaluation records."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r for r in rows if "loss" in r and "split" not in r], [r for r in rows if "split" in r]


def training_curves(metrics_path: str | Path, title: str = ""):
    """Loss and learning rate per update, and evaluation top-1 over updates."""
    train, evals = read_metrics(metrics_path)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    steps = [r["step"] for r in train]
    axes[0].plot(steps, [r["loss"] for r in train])
    axes[0].set(xlabel="update", ylabel="training loss", title="loss")
    axes[1].plot(steps, [r["lr"] for r in train], color="tab:orange")
    axes[1].set(xlabel="update", ylabel="learning rate", title="schedule")
    axes[2].plot([r["step"] for r in evals], [r["top1"] for r in evals], "o-", color="tab:green")
    axes[2].set(xlabel="update", ylabel="top-1 (%)",
                title=f"{evals[0]['split'] if evals else 'eval'} accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(result: dict):
    """Row-normalised confusion matrix from a result record."""
    cm = np.asarray(result["confusion"], dtype=float)
    cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    names = result["class_names"]
    fig, ax = plt.subplots(figsize=(0.5 * len(names) + 3, 0.5 * len(names) + 2.5))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted", ylabel="true", title="confusion (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def token_mixing_units(weight: torch.Tensor, grid: int, n_units: int = 32, cols: int = 8,
                       title: str = ""):
    """Paper Figure 5: rows of a token-mixing ``fc1.weight`` (D_S, S) shown as grid images."""
    w = weight.detach().float().cpu()[:n_units].reshape(-1, grid, grid)
    rows = int(np.ceil(len(w) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1 + 0.4))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, unit in zip(np.atleast_1d(axes).ravel(), w, strict=False):
        lim = float(unit.abs().max()) or 1.0
        ax.imshow(unit, cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def mixer_data_flow(cfg):
    """Diagram of the data flow through a Mixer with the shapes of ``cfg``."""
    steps = [
        ("image", f"3 x {cfg.img_size} x {cfg.img_size}"),
        (f"stem: {cfg.patch_size}x{cfg.patch_size} conv, stride {cfg.patch_size}",
         f"S={cfg.num_patches} tokens x C={cfg.hidden_dim}"),
        ("LayerNorm -> transpose -> token-mixing MLP\n(S -> D_S -> S, shared over channels)",
         f"{cfg.hidden_dim} x {cfg.tokens_mlp_dim} -> {cfg.hidden_dim} x {cfg.num_patches}"),
        ("+ skip; LayerNorm -> channel-mixing MLP\n(C -> D_C -> C, shared over tokens)",
         f"{cfg.num_patches} x {cfg.channels_mlp_dim} -> {cfg.num_patches} x {cfg.hidden_dim}"),
        (f"x {cfg.num_blocks} Mixer layers, then LayerNorm", f"{cfg.num_patches} x "
                                                              f"{cfg.hidden_dim}"),
        ("global average pooling -> linear head", f"{cfg.hidden_dim} -> {cfg.num_classes}"),
    ]
    fig, ax = plt.subplots(figsize=(8, 6.5))
    ax.axis("off")
    for i, (what, shape) in enumerate(steps):
        y = 1 - i / len(steps)
        color = "#dbe9f6" if "mixing" not in what else "#fde2c8"
        ax.text(0.05, y, what, va="center", fontsize=10,
                bbox=dict(boxstyle="round", fc=color, ec="gray"))
        ax.text(0.72, y, shape, va="center", fontsize=10, family="monospace")
        if i < len(steps) - 1:
            ax.annotate("", xy=(0.2, y - 0.115), xytext=(0.2, y - 0.055),
                        arrowprops=dict(arrowstyle="->"))
    ax.set_title(f"{cfg.name}: data flow and shapes (batch dimension omitted)")
    return fig


def bar_compare(groups: dict[str, dict[str, float]], ylabel: str, title: str = ""):
    """Grouped bars: ``groups[model][condition] = value``."""
    models = list(groups)
    conditions = list(next(iter(groups.values())))
    x = np.arange(len(conditions))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, m in enumerate(models):
        vals = [groups[m][c] for c in conditions]
        bars = ax.bar(x + (i - (len(models) - 1) / 2) * 0.38, vals, 0.36, label=m)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(x, conditions)
    ax.set(ylabel=ylabel, title=title)
    ax.legend()
    fig.tight_layout()
    return fig
