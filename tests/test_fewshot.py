"""The few-shot probe: ridge regression to {-1, 1} targets, l2 chosen on the shots alone,
seeded nested draws shared by every model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixer_lib.data import DataConfig
from mixer_lib.fewshot import (
    choose_l2,
    draw_shots,
    few_shot,
    loo_accuracy,
    pre_logits,
    probe_accuracy,
    ridge,
    transfer_probe,
)
from mixer_lib.model import create_model
from tests.test_data import make_image_folder


def test_ridge_is_the_penalised_least_squares_solution_with_a_free_bias():
    rng = np.random.default_rng(0)
    x, t, l2 = rng.normal(size=(7, 12)), rng.normal(size=(7, 3)), 0.3
    w, b = ridge(x, t, l2)
    # the primal solution with the bias left out of the penalty
    a = np.hstack([x, np.ones((7, 1))])
    penalty = np.diag([l2] * 12 + [0.0])
    wb = np.linalg.solve(a.T @ a + penalty, a.T @ t)
    np.testing.assert_allclose(w, wb[:12], atol=1e-9)
    np.testing.assert_allclose(b, wb[12], atol=1e-9)


def _clusters(per_class: int, classes: int, dim: int, spread: float, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    y = np.repeat(np.arange(classes), per_class)
    return centres[y] + spread * rng.normal(size=(len(y), dim)), y


def test_probe_separates_clusters_and_is_near_chance_on_noise():
    x, y = _clusters(5, 4, 32, 0.3, 0)
    tx, ty = _clusters(200, 4, 32, 0.3, 0)
    acc, l2 = probe_accuracy(x, y, tx[::-1] * 1.0, ty[::-1], 4)
    assert acc == 100.0 and l2 > 0
    rng = np.random.default_rng(1)
    acc, _ = probe_accuracy(rng.normal(size=(20, 32)), y, rng.normal(size=(4000, 32)),
                            rng.integers(0, 4, 4000), 4)
    assert 20 < acc < 30  # chance is 25 %


def test_l2_is_chosen_by_leave_one_out_on_the_shots_larger_on_a_tie():
    x, y = _clusters(4, 3, 16, 0.1, 2)
    assert loo_accuracy(x, y, 3, 1.0) == 1.0
    assert choose_l2(x, y, 3, grid=(0.01, 1.0, 4.0)) == 4.0  # all perfect: the largest
    rng = np.random.default_rng(3)
    noisy = rng.normal(size=(12, 16))
    grid = (1e-3, 1e3)
    scores = {g: loo_accuracy(noisy, y, 3, g) for g in grid}
    best = max(scores.values())
    assert choose_l2(noisy, y, 3, grid=grid) == max(g for g in grid if scores[g] == best)


def test_draws_are_balanced_nested_and_depend_on_the_draw_only():
    labels = [c for c in range(3) for _ in range(20)]
    d0 = draw_shots(labels, 10, 0)
    assert d0 == draw_shots(labels, 10, 0) and d0 != draw_shots(labels, 10, 1)
    assert len(set(d0)) == 30
    for k in (1, 5, 10):  # the first k * classes are k shots of every class
        assert sorted(labels[i] for i in d0[:3 * k]) == sorted([0, 1, 2] * k)
    with pytest.raises(ValueError, match="class 2 has 3 images; 5 shots"):
        draw_shots([0] * 9 + [1] * 9 + [2] * 3, 5, 0)


def test_few_shot_averages_draws_with_a_standard_error():
    x, y = _clusters(10, 3, 8, 2.0, 4)
    tx, ty = _clusters(100, 3, 8, 2.0, 4)
    draws = [draw_shots(y, 5, d) for d in range(4)]
    res = few_shot(x, y, draws, tx, ty, 2)
    assert len(res.per_draw) == len(res.l2) == 4 and res.mean == pytest.approx(
        np.mean(res.per_draw)) and res.se == pytest.approx(np.std(res.per_draw, ddof=1) / 2)
    assert res.as_dict()["shots"] == 2


def test_pre_logits_read_every_model_the_same_way():
    from mixer_lib.baselines import BASELINES

    x = torch.randn(3, 3, 32, 32)
    models = [create_model("Mixer-T/4", num_classes=5, img_size=32),
              *(make(5) for make in BASELINES.values())]
    for model in models:
        model.eval()
        feats, labels = pre_logits(model, [(x, torch.tensor([0, 1, 2]))])
        assert feats.shape[0] == 3 and feats.dtype == np.float64 and list(labels) == [0, 1, 2]
        with torch.no_grad():  # the head applied to them gives the model's logits
            logits = model.head(torch.from_numpy(feats).float())
            torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=1e-5)


def test_transfer_probe_on_a_folder_uses_train_shots_and_every_test_image(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b", "c", "d"), per_class=6)
    data = DataConfig(dataset=f"imagefolder:{root}", img_size=16, classes=(1, 3),
                      train_limit=2, randaugment=(2, 15))
    model = create_model("Mixer-T/4", num_classes=2, img_size=16)
    out = transfer_probe(model, data, shots=(1, 3), draws=3)
    assert out["num_test"] == 12 and out["draws"] == 3 and out["feature_dim"] == 128
    assert set(out["shots"]) == {"1", "3"} and len(out["shots"]["3"]["per_draw"]) == 3
    # deterministic: the same model and data give the same numbers
    assert transfer_probe(model, data, shots=(1, 3), draws=3) == out
