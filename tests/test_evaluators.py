"""Evaluators beside top-1: ReaL for ImageNet validation runs, plain-resize top-1 for CIFAR-10
runs evaluated the paper's way; one list for training and for released checkpoints."""

from __future__ import annotations

import json

import pytest

from mixer_lib import evaluators
from mixer_lib.config import RunConfig
from mixer_lib.protocol import run_protocol
from mixer_lib.train import train
from tests.test_data import make_cifar_batches


@pytest.mark.parametrize("dataset,split,crop,names", [
    ("imagenet1k", "test", "resmall_crop", ["real"]),
    ("imagenet1k", "val", "resmall_crop", []),
    ("standin:imagenet1k", "test", "resize", ["real"]),
    ("cifar10", "test", "resmall_crop", ["resize"]),
    ("cifar10", "test", "resize", []),
    ("cifar10", "val", "resmall_crop", []),
    ("cifar10-jpeg", "test", "resmall_crop", []),  # not the README's dataset
])
def test_which_evaluators_apply(dataset, split, crop, names):
    cfg = RunConfig(dataset=dataset, variant="Mixer-T/4", img_size=32, eval_split=split,
                    eval_crop=crop)
    assert [e.name for e in evaluators.EVALUATORS if e.applies(cfg)] == names


def _cifar_run(root, **kw) -> RunConfig:
    base = dict(dataset="cifar10", data_root=str(root), variant="Mixer-T/4", img_size=16,
                recipe="finetune", steps=2, batch_size=10, num_workers=0, lr=0.01,
                eval_crop="resmall_crop")
    return RunConfig(**{**base, **kw})


def test_a_cifar10_run_reports_top1_evaluated_both_ways(tmp_path):
    make_cifar_batches(tmp_path / "data" / "cifar10", "cifar10", per_class=3)
    result = train(_cifar_run(tmp_path / "data"), tmp_path / "run", progress=False)
    assert 0.0 <= result["top1_resize"] <= 100.0 and "real_top1" not in result
    seen = []
    done = evaluators.Finished([], None, _cifar_run(tmp_path / "data").resolved(),
                               lambda ds: seen.append(ds) or 50.0)
    assert evaluators.score([(evaluators.EVALUATORS[1], None)], done) == {"top1_resize": 50.0}
    from mixer_lib.transforms import eval_transform

    assert repr(seen[0].transform) == repr(eval_transform(16, 1.0))  # plain resize
    plain = train(_cifar_run(tmp_path / "data", eval_crop="resize"), tmp_path / "plain",
                  progress=False)
    assert "top1_resize" not in plain


def test_the_protocol_collects_every_evaluators_scores(tmp_path):
    make_cifar_batches(tmp_path / "data" / "cifar10", "cifar10", per_class=5)
    record = run_protocol(_cifar_run(tmp_path / "data"), tmp_path / "p", grid=(0.01,),
                          repeats=2, progress=False)
    finals = [json.loads((tmp_path / "p" / "final" / f"seed-{s}" / "results.json")
                         .read_text())["top1_resize"] for s in (0, 1)]
    assert record["test_top1_resize"] == finals
    assert record["test_top1_resize_mean"] == pytest.approx(sum(finals) / 2)
    assert "real_top1" not in record
