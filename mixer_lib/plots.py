"""Figures for the book (matplotlib). Each function returns the Figure it draws."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from mixer_lib.significance import SE_MULTIPLE, loss


def read_metrics(path: str | Path) -> tuple[list[dict], list[dict]]:
    """Split ``metrics.jsonl`` into training records and evaluation records."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r for r in rows if "loss" in r and "split" not in r], [r for r in rows if "split" in r]


def training_curves(metrics_path: str | Path, title: str = ""):
    """Loss and learning rate per update, and evaluation top-1 over updates."""
    train, evals = read_metrics(metrics_path)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
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


FULL_MATRIX_MAX_CLASSES = 50  # above this the matrix is unreadable; show confused pairs


def confusion_matrix(result: dict, top_pairs: int = 20):
    """Row-normalised confusion matrix from a result record; with more than
    :data:`FULL_MATRIX_MAX_CLASSES` classes (ImageNet's 1000) the most confused pairs instead,
    as bars (a 1000 x 1000 matrix at readable size would be a 350-inch canvas)."""
    cm = np.asarray(result["confusion"], dtype=float)
    cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    names = result["class_names"]
    if len(names) > FULL_MATRIX_MAX_CLASSES:
        return confused_pairs(cm, names, top_pairs)
    fig, ax = plt.subplots(figsize=(0.35 * len(names) + 2.5, 0.35 * len(names) + 2))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted", ylabel="true", title="confusion (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def most_confused(cm: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """The ``k`` largest off-diagonal entries of a row-normalised confusion matrix:
    ``(true, predicted, share of the true class)``, largest first."""
    off = cm.copy()
    np.fill_diagonal(off, -1.0)
    flat = np.argsort(off, axis=None)[::-1][:k]
    return [(int(i), int(j), float(off[i, j])) for i, j in
            zip(*np.unravel_index(flat, off.shape), strict=True) if off[i, j] > 0]


def confused_pairs(cm: np.ndarray, names: list[str], k: int = 20):
    """Bars of the ``k`` most confused (true -> predicted) pairs, classes named with their
    index (ImageNet has duplicate names: two "crane", two "maillot")."""
    pairs = most_confused(cm, k)
    fig, ax = plt.subplots(figsize=(8, 0.3 * max(len(pairs), 1) + 1.4))
    y = np.arange(len(pairs))[::-1]
    ax.barh(y, [100 * p for _, _, p in pairs], color="tab:blue")
    ax.set_yticks(y, [f"{i} {names[i]} -> {j} {names[j]}" for i, j, _ in pairs], fontsize=8)
    ax.set(xlabel="share of the true class predicted as the other (%)",
           title=f"the {len(pairs)} most confused pairs of {len(names)} classes")
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
    s, c = cfg.num_patches, cfg.hidden_dim
    steps = [
        ("image", f"{cfg.in_chans} x {cfg.img_size} x {cfg.img_size}"),
        (f"stem: one dense layer on each {cfg.patch_size}x{cfg.patch_size} patch\n"
         f"(the official {cfg.patch_size}x{cfg.patch_size} conv, stride {cfg.patch_size})",
         f"X: S={s} tokens x C={c}"),
        ("LayerNorm -> token-mixing MLP on each column\n(shared over the C channels)",
         f"per channel: {s} -> {cfg.tokens_mlp_dim} -> {s}"),
        ("+ skip; LayerNorm -> channel-mixing MLP on each row\n(shared over the S tokens)",
         f"per token: {c} -> {cfg.channels_mlp_dim} -> {c}"),
        (f"+ skip; x {cfg.num_blocks} Mixer layers, then LayerNorm", f"{s} x {c}"),
        ("global average pooling -> linear head", f"{c} -> {cfg.num_classes}"),
    ]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.set(xlim=(0, 1), ylim=(0.1, 1.05))
    ax.axis("off")
    for i, (what, shape) in enumerate(steps):
        y = 1 - i / len(steps)
        color = "#dbe9f6" if "mixing" not in what else "#fde2c8"
        ax.text(0.02, y, what, va="center", fontsize=10,
                bbox=dict(boxstyle="round", fc=color, ec="gray"))
        ax.text(0.62, y, shape, va="center", fontsize=10, family="monospace")
        if i < len(steps) - 1:
            ax.annotate("", xy=(0.15, y - 1 / len(steps) + 0.05), xytext=(0.15, y - 0.05),
                        arrowprops=dict(arrowstyle="->"))
    fig.suptitle(f"{cfg.name}: data flow and shapes (batch dimension omitted)")
    fig.tight_layout()
    return fig


def bar_compare(groups: dict[str, dict[str, float]], ylabel: str, title: str = "",
                errors: dict[str, dict[str, float]] | None = None):
    """Grouped bars: ``groups[model][condition] = value``; ``errors`` (same keys), when
    given, are drawn as error bars (e.g. one standard error)."""
    models = list(groups)
    conditions = list(next(iter(groups.values())))
    x = np.arange(len(conditions))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, m in enumerate(models):
        vals = [groups[m][c] for c in conditions]
        err = [errors[m][c] for c in conditions] if errors else None
        bars = ax.bar(x + (i - (len(models) - 1) / 2) * 0.38, vals, 0.36, label=m, yerr=err,
                      capsize=3 if err else 0)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(x, conditions)
    ax.set(ylabel=ylabel, title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def compute_tradeoff(rows: list[dict], accuracy: dict[str, list[tuple[float, str]]],
                     title: str = ""):
    """Paper Figure 2 / Table 2 trade-off from benchmark rows (``benchmarks/throughput.py``).

    Left: forward GFLOPs vs measured inference images/s, one point per model. Right: measured
    inference images/s vs ImageNet top-1 for the models in ``accuracy``
    (``model -> [(top1, label), ...]``); models without an accuracy figure are left out.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in rows:
        left.scatter(r["gflops_fwd"], r["infer_img_s"], color="tab:blue")
        left.annotate(r["model"].removeprefix("timm:"), (r["gflops_fwd"], r["infer_img_s"]),
                      fontsize=8, xytext=(4, 4), textcoords="offset points")
    left.set(xlabel="GFLOPs per image (forward)", ylabel="inference images/s", title="cost")
    left.set_xlim(0, 1.25 * max((r["gflops_fwd"] for r in rows), default=1))
    left.set_ylim(0, 1.2 * max((r["infer_img_s"] for r in rows), default=1))
    points = [(r["infer_img_s"], top1, f"{r['model']} ({label})")
              for r in rows for top1, label in accuracy.get(r["model"], [])]
    for x, y, label in points:
        right.scatter(x, y, color="tab:orange")
        right.annotate(label, (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    right.set(xlabel="inference images/s", ylabel="ImageNet top-1 (%)",
              title="accuracy vs throughput")
    if points:
        right.set_xlim(0, 1.6 * max(p[0] for p in points))
        low, high = min(p[1] for p in points), max(p[1] for p in points)
        right.set_ylim(low - 2, high + 2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def effect_bars(rows: list[dict], title: str = ""):
    """Horizontal bars of effects with two-standard-error whiskers: ``rows`` of
    :func:`mixer_lib.autopsy.autopsy` (``deviation``, ``effect_points``, ``se``)."""
    rows = [r for r in rows if r["effect_points"] is not None]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    colours = ["tab:red" if loss(r["effect_points"], r["se"]) else "tab:grey" for r in rows]
    ax.barh(y, [r["effect_points"] for r in rows], xerr=[SE_MULTIPLE * r["se"] for r in rows],
            color=colours, capsize=3)
    ax.set_yticks(y, [r["deviation"] for r in rows])
    ax.axvline(0, color="black", lw=0.8)
    ax.set(xlabel="change in test top-1 vs the official recipe (points; whiskers: 2 s.e.)",
           title=title)
    fig.tight_layout()
    return fig


def scale_curves(records: dict, models: tuple[str, ...], metrics: tuple[str, ...] = (
        "upstream", "5-shot"), title: str = ""):
    """The scale study (:mod:`mixer_lib.scale`): one panel per metric against the number of
    pre-training images (log axis), one line per model, bars of one standard error; a model
    or size without two seeds committed is left out (the panel says so when empty)."""
    from mixer_lib.scale import LABELS, METRICS, SIZES, curves

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        lines = curves(records, models, metric)
        for model, pts in lines.items():
            n, mean, se = zip(*pts, strict=True)
            ax.errorbar(n, mean, yerr=se, marker="o", capsize=3, label=LABELS[model])
        if not lines:
            ax.text(0.5, 0.5, "pending: no size with two seeds committed",
                    ha="center", va="center", transform=ax.transAxes)
        ax.set_xscale("log")
        ax.set_xticks(SIZES, [f"{n:,}" for n in SIZES])
        ax.minorticks_off()
        ax.set(xlabel="pre-training images (classes 0-4)", ylabel=METRICS[metric])
        if lines:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def block_units(model, block: int, n_units: int = 32):
    """:func:`token_mixing_units` of ``model``'s block ``block`` (negative: from the end)."""
    block = block % model.cfg.num_blocks
    w, grid = model.blocks[block].mlp_tokens.fc1.weight, model.cfg.grid_size
    return token_mixing_units(w, grid, n_units=n_units, title=(
        f"block {block}: first {min(n_units, w.shape[0])} of {w.shape[0]} units "
        f"({grid}x{grid} patch grid)"))


def study_units(stats: dict | None, title: str = "study upstream Mixer-T/4, block 0"):
    """The first block's units kept in a study record's token-mixing statistics, or a
    "pending" figure when the record is not committed."""
    if stats is None:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "pending: e1-up-mixer not committed", ha="center", va="center")
        ax.axis("off")
        return fig
    return token_mixing_units(torch.tensor(stats["weights"]["0"]), stats["grid"], n_units=32,
                              title=title)
