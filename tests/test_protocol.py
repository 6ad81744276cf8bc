"""The paper's fine-tuning protocol: sweep on the dev slice, choice, repeats on the whole
training split; an official-layout npz as the pre-trained weights; resumable; CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mixer_lib.checkpoints import save_npz
from mixer_lib.config import RunConfig
from mixer_lib.data import build_split
from mixer_lib.model import create_model
from mixer_lib.protocol import (
    choose_lr,
    cli_arguments,
    final_config,
    main,
    sweep_config,
    torchrun_command,
)
from mixer_lib.recipes import PAPER_LR_GRID
from mixer_lib.runtime import data_config
from tests.test_data import make_image_folder


def test_choice_is_the_best_dev_top1_and_a_tie_goes_to_the_smaller_rate():
    assert choose_lr({0.003: 50.0, 0.01: 61.0, 0.03: 60.0, 0.06: 10.0}) == 0.01
    assert choose_lr({0.06: 70.0, 0.003: 70.0, 0.03: 70.0}) == 0.003
    assert choose_lr({0.03: 12.5}) == 0.03


def test_dev_images_never_enter_sweep_training_and_final_runs_use_the_whole_split(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=50)
    base = RunConfig(dataset=f"imagefolder:{data}", variant="Mixer-T/4", img_size=16,
                     steps=2, batch_size=8)
    sweep = sweep_config(base, 0.01)
    train = build_split(data_config(sweep), "train")
    dev = build_split(data_config(sweep), sweep.eval_split)
    assert sweep.eval_split == "val" and len(dev) == 3  # 2% of 150
    assert not set(train.indices) & set(dev.indices)
    assert len(train) + len(dev) == 150
    final = final_config(base, 0.01, seed=1)
    whole = build_split(data_config(final), "train")
    assert final.eval_split == "test" and sorted(whole.indices) == list(range(150))
    assert set(dev.indices) <= set(whole.indices)


def test_torchrun_command_carries_every_option():
    cfg = RunConfig(dataset="cifar10", variant="Mixer-B/16", lr=0.01, seed=2, compile=True)
    tmp = Path("/runs/x")
    cmd = torchrun_command(cfg, tmp, 4)
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert "--nproc_per_node=4" in cmd and cmd[cmd.index("--out") + 1] == str(tmp)
    assert "--resume" in cmd and "--compile" in cmd and "--no-download" in cmd
    assert cmd[cmd.index("--lr") + 1] == "0.01" and cmd[cmd.index("--seed") + 1] == "2"
    assert "--steps" not in cli_arguments(cfg)  # None: left to the preset
    multi = torchrun_command(cfg, tmp, 8, "--nnodes=2 --node-rank=1 --rdzv-endpoint=h:29500")
    assert "--standalone" not in multi and "--nnodes=2" in multi and "--node-rank=1" in multi


def _official_npz(tmp_path):
    torch.manual_seed(0)
    model = create_model("Mixer-T/4", num_classes=7, img_size=32)  # another head: replaced
    return save_npz(model, tmp_path / "pretrained.npz")


def test_protocol_end_to_end_on_real_cifar10(cifar_root, tmp_path, capsys):
    npz = _official_npz(tmp_path)
    out = tmp_path / "protocol"
    argv = ["--out", str(out), "--dataset", "cifar10-jpeg", "--data-root", str(cifar_root),
            "--variant", "Mixer-T/4", "--weights", str(npz), "--img-size", "32", "--steps",
            "2", "--batch-size", "16", "--train-limit", "200", "--eval-limit", "100",
            "--num-workers", "0", "--repeats", "2", "--no-progress"]
    assert main(argv) == 0
    record = json.loads((out / "protocol.json").read_text())
    assert record["grid"] == list(PAPER_LR_GRID)
    assert set(record["dev_top1"]) == {f"{g:g}" for g in PAPER_LR_GRID}
    best = max(record["dev_top1"].values())
    assert record["chosen_lr"] == min(float(k) for k, v in record["dev_top1"].items()
                                      if v == best)
    assert len(record["test_top1"]) == 2
    assert record["test_top1_mean"] == pytest.approx(sum(record["test_top1"]) / 2)
    assert record["test_top1_std"] is not None and not record["dry_run"]
    for lr, folder in record["runs"]["sweep"].items():
        r = json.loads((out / "sweep" / f"lr-{lr}" / "results.json").read_text())
        assert folder.endswith(f"lr-{lr}") and r["eval_split"] == "val"
        assert r["config"]["lr"] == float(lr) and r["num_eval"] == 100
        assert "new head is zero-initialised" in r["weights_report"]
    for seed, folder in enumerate(record["runs"]["final"]):
        r = json.loads((out / "final" / f"seed-{seed}" / "results.json").read_text())
        assert r["eval_split"] == "test" and r["config"]["seed"] == seed
        assert r["config"]["lr"] == record["chosen_lr"] and folder.endswith(f"seed-{seed}")
    # again: every run is reused, none retrained
    mtimes = {p: p.stat().st_mtime for p in out.rglob("checkpoint.pt")}
    assert main(argv) == 0
    assert {p: p.stat().st_mtime for p in out.rglob("checkpoint.pt")} == mtimes
    assert json.loads((out / "protocol.json").read_text())["test_top1"] == record["test_top1"]


def test_protocol_cli_refuses_bad_options(tmp_path, capsys):
    base = ["--out", str(tmp_path / "p"), "--dataset", "cifar10", "--variant", "Mixer-T/4",
            "--img-size", "32"]
    for extra, message in [(["--grid", "0.01,fast"], "grid must be comma-separated numbers"),
                           (["--grid", "0.01,-0.1"], "grid must be one or more learning rates"),
                           (["--repeats", "0"], "repeats must be >= 1; got 0"),
                           (["--gpus", "two"], "gpus must be an integer; got the text 'two'"),
                           (["--steps", "-1"], "steps must be >= 1; got -1"),
                           (["--resume"], "the protocol always reuses finished runs")]:
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    with pytest.raises(SystemExit):  # the protocol sets lr and seed itself
        main([*base, "--lr", "0.1"])
