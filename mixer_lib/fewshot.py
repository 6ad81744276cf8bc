"""Few-shot transfer: a linear probe on frozen pre-logit features (paper Section 3.3).

The paper's dataset-size study scores each pre-trained model by "linear 5-shot" accuracy:
ℓ2-regularised least squares from frozen features of k images per class to {-1, 1} targets,
scored on a held-out test set. Here:

- features are the model's pre-logits (``forward_head(forward_features(x), pre_logits=True)``:
  Mixer's pooled tokens, ViT's class token, the ResNet's pooled map), each scaled to unit
  length and centred on the shots' mean;
- the regularisation strength is chosen per draw by leave-one-out accuracy on the shots alone
  (:func:`choose_l2`), never on the test images;
- accuracy is averaged over several seeded draws of the shots; the draws are the same for every
  model (they depend on the draw index only), so models are compared on the same shots.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from mixer_lib.data import DataConfig, build_split

L2_GRID = tuple(2.0 ** k for k in range(-10, 11, 2))


@torch.no_grad()
def pre_logits(model: nn.Module, batches: Iterable, device: torch.device | str = "cpu"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features and labels of every ``(images, labels)`` batch: ``(N, D)``, ``(N,)``."""
    model.eval()
    feats, labels = [], []
    for x, y in batches:
        f = model.forward_head(model.forward_features(x.to(device)), pre_logits=True)
        feats.append(f.float().cpu().numpy())
        labels.append(np.asarray(y))
    return np.concatenate(feats).astype(np.float64), np.concatenate(labels)


def _prepare(x: np.ndarray, centre: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Unit-length rows, centred on ``centre`` (default: their own mean)."""
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    centre = x.mean(axis=0) if centre is None else centre
    return x - centre, centre


def _targets(labels: np.ndarray, classes: int) -> np.ndarray:
    return 2.0 * np.eye(classes)[labels] - 1.0  # {-1, 1} per class


def ridge(x: np.ndarray, targets: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Least squares with an ℓ2 penalty on the weights (not the bias), in the dual form (few
    samples, many features): ``x (n, D)``, ``targets (n, K)`` -> ``weights (D, K)``, ``bias
    (K,)``."""
    mean_x, mean_t = x.mean(axis=0), targets.mean(axis=0)
    xc = x - mean_x
    alpha = np.linalg.solve(xc @ xc.T + l2 * np.eye(len(x)), targets - mean_t)
    weights = xc.T @ alpha
    return weights, mean_t - mean_x @ weights


def loo_accuracy(x: np.ndarray, labels: np.ndarray, classes: int, l2: float) -> float:
    """Leave-one-out accuracy of :func:`ridge` on the shots: each shot predicted by the probe
    fitted on the others."""
    hits = 0
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        w, b = ridge(x[keep], _targets(labels[keep], classes), l2)
        hits += int(np.argmax(x[i] @ w + b) == labels[i])
    return hits / len(x)


def choose_l2(x: np.ndarray, labels: np.ndarray, classes: int,
              grid: Sequence[float] = L2_GRID) -> float:
    """The grid value with the best leave-one-out accuracy on the shots (the larger one on a
    tie: the simpler probe)."""
    scores = [(loo_accuracy(x, labels, classes, l2), l2) for l2 in grid]
    return max(scores)[1]


def probe_accuracy(shots_x: np.ndarray, shots_y: np.ndarray, test_x: np.ndarray,
                   test_y: np.ndarray, classes: int) -> tuple[float, float]:
    """Top-1 (%) on the test features of the probe fitted on the shots, and its ℓ2."""
    shots_x, centre = _prepare(shots_x)
    test_x, _ = _prepare(test_x, centre)
    l2 = choose_l2(shots_x, shots_y, classes)
    w, b = ridge(shots_x, _targets(shots_y, classes), l2)
    return 100.0 * float(np.mean(np.argmax(test_x @ w + b, axis=1) == test_y)), l2


def draw_shots(labels: Sequence[int], shots: int, draw: int) -> list[int]:
    """Indices of ``shots`` images per class, drawn by seed ``draw`` alone; the first k of
    them are the k-shot draw for every k < ``shots`` (nested)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(1000 + draw)
    out = []
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        if len(pool) < shots:
            raise ValueError(f"class {c} has {len(pool)} images; {shots} shots asked")
        out.append(rng.permutation(pool)[:shots])
    return np.stack(out, axis=1).reshape(-1).tolist()  # shot 0 of every class, then shot 1


@dataclass(frozen=True)
class FewShot:
    """k-shot accuracy (%) over draws: mean, standard error over draws, each draw's accuracy
    and chosen ℓ2."""

    shots: int
    mean: float
    se: float
    per_draw: list[float]
    l2: list[float]

    def as_dict(self) -> dict:
        return asdict(self)


def few_shot(shot_features: np.ndarray, shot_labels: np.ndarray, shot_draws: list[list[int]],
             test_x: np.ndarray, test_y: np.ndarray, shots: int) -> FewShot:
    """``shots``-shot accuracy for each draw (positions into ``shot_features``, as
    :func:`draw_shots` lists them: the first ``shots * classes`` are this k's draw)."""
    classes = len(np.unique(test_y))
    accs, l2s = [], []
    for draw in shot_draws:
        idx = draw[:shots * classes]
        acc, l2 = probe_accuracy(shot_features[idx], shot_labels[idx], test_x, test_y,
                                 classes)
        accs.append(acc)
        l2s.append(l2)
    se = statistics.stdev(accs) / math.sqrt(len(accs)) if len(accs) > 1 else float("nan")
    return FewShot(shots, statistics.fmean(accs), se, accs, l2s)


def transfer_probe(model: nn.Module, data: DataConfig, shots: Sequence[int] = (5, 10),
                   draws: int = 5, device: torch.device | str = "cpu",
                   batch_size: int = 250) -> dict:
    """k-shot accuracy of ``model``'s frozen features on ``data`` (its classes, e.g. the
    study's held-out classes 5-9): shots drawn from the training split (pre-processed as for
    evaluation), scored on every image of the test split. Returns ``{"shots": {k:
    FewShot.as_dict()}, "draws", "num_test", "feature_dim"}``."""
    data = replace(data, keep_decoded=False, train_limit=None, eval_limit=None)
    pool = build_split(data, "train", augment=False)
    picks = [draw_shots(pool.targets, max(shots), d) for d in range(draws)]
    union = sorted({i for p in picks for i in p})
    where = {i: k for k, i in enumerate(union)}
    test = build_split(data, "test")
    shot_x, shot_y = pre_logits(model, DataLoader(Subset(pool, union), batch_size), device)
    test_x, test_y = pre_logits(model, DataLoader(test, batch_size), device)
    positions = [[where[i] for i in p] for p in picks]
    return {"shots": {str(k): few_shot(shot_x, shot_y, positions, test_x, test_y, k).as_dict()
                      for k in shots},
            "draws": draws, "num_test": len(test_y), "feature_dim": int(shot_x.shape[1])}
