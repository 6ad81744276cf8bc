"""Run options the study needs: class subsets, fixed data order, no flip, a schedule that
runs ahead, selection on the evaluated split, fine-tuning from a run, random token mixing."""

from __future__ import annotations

import json

import pytest
import torch

from mixer_lib.checkpoints import save_npz
from mixer_lib.config import RunConfig, experiment
from mixer_lib.data import DataConfig, build_split
from mixer_lib.model import create_model
from mixer_lib.sampling import EpochSampler
from mixer_lib.start import build_model
from mixer_lib.train import train
from mixer_lib.transforms import train_transform
from tests.test_data import make_image_folder
from tests.test_train import tiny_run


def test_class_subset_is_relabelled(tmp_path):
    root = make_image_folder(tmp_path / "t", classes=("ant", "bee", "cat", "dog"), per_class=3)
    ds = build_split(DataConfig(dataset=f"imagefolder:{root}", img_size=8, classes=(3, 1)),
                     "test")
    assert ds.classes == ["dog", "bee"] and sorted(ds.targets) == [0, 0, 0, 1, 1, 1]
    assert {ds[i][1] for i in range(len(ds))} == {0, 1}
    assert RunConfig(classes="0-4").classes == "0-4"


def test_fixed_order_repeats_one_order_every_epoch():
    fixed = [i for i, _ in EpochSampler(5, 1, total=15, fixed_order=True)]
    assert fixed[:5] == fixed[5:10] == fixed[10:] and sorted(fixed[:5]) == list(range(5))
    shuffled = [i for i, _ in EpochSampler(5, 1, total=15)]
    assert shuffled[:5] == fixed[:5] and shuffled[5:10] != shuffled[:5]


def test_flip_can_be_turned_off():
    names = [type(t).__name__ for t in train_transform(8, flip=False).transforms]
    assert "RandomHorizontalFlip" not in names
    assert "RandomHorizontalFlip" in [type(t).__name__ for t in train_transform(8).transforms]


def test_schedule_lead_and_best_report(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=4)
    cfg = tiny_run(root, steps=4, eval_every=1, lr_lead=1, report="best", mixup_alpha=0.0,
                   lr=0.01, warmup_steps=2, decay="cosine")
    result = train(cfg, tmp_path / "run", progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # update k uses the schedule at k + 1: linear warm-up over 2, cosine over the other 2
    # (lr(t) = 0.01 * min(1, t/2) * (1 + cos(pi * clip((t - 2) / 2, 0, 1))) / 2)
    assert [r["lr"] for r in rows if "lr" in r] == pytest.approx([0.005, 0.01, 0.005, 0.0],
                                                                 abs=1e-12)
    evals = [r["top1"] for r in rows if "split" in r]
    assert len(evals) == 4 and result["top1"] == max(evals)
    assert result["top1_final"] == evals[-1] and "best_step" in result


def test_fine_tune_from_a_run_checkpoint_and_random_token_mixing(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=4)
    up = train(tiny_run(root, steps=2, mixup_alpha=0.0), tmp_path / "up", progress=False)
    ckpt = tmp_path / "up" / "checkpoint.pt"
    cfg = RunConfig(dataset=f"imagefolder:{root}", variant="Mixer-T/4", img_size=16,
                    weights=str(ckpt))
    model, report = build_model(cfg, 5)
    up_state = torch.load(ckpt, weights_only=True)["model"]
    assert torch.equal(model.state_dict()["stem.weight"], up_state["stem.weight"])
    assert "new head is zero-initialised" in report and up["steps"] == 2
    # ResNet baseline from its own run
    train(tiny_run(root, variant="ResNet-S", steps=1, mixup_alpha=0.0), tmp_path / "r",
          progress=False)
    res, text = build_model(RunConfig(dataset=f"imagefolder:{root}", variant="ResNet-S",
                                      img_size=16, weights=str(tmp_path / "r" /
                                                               "checkpoint.pt")), 3)
    assert text.startswith("loaded")
    # at twice the resolution: block-diagonal copies (App. C) or a fresh token mixing
    npz = save_npz(create_model("Mixer-T/4", num_classes=3, img_size=16), tmp_path / "t.npz")
    big = dict(dataset=f"imagefolder:{root}", variant="Mixer-T/4", img_size=32,
               weights=str(npz))
    copied, _ = build_model(RunConfig(**big), 3)
    fresh, note = build_model(RunConfig(**big, token_init="random"), 3)
    w_c = copied.blocks[0].mlp_tokens.fc1.weight
    w_f = fresh.blocks[0].mlp_tokens.fc1.weight
    assert w_c.shape == w_f.shape and not torch.equal(w_c, w_f)
    assert torch.equal(copied.blocks[0].mlp_channels.fc1.weight,
                       fresh.blocks[0].mlp_channels.fc1.weight)
    assert "re-initialised at random" in note


def test_records_written_before_a_field_existed_keep_their_identity():
    old = {k: v for k, v in experiment(RunConfig(dataset="cifar10")).items()
           if k not in ("flip", "data_order", "lr_lead", "report", "token_init", "classes")}
    assert experiment(old) == experiment(RunConfig(dataset="cifar10"))
