"""Several processes, one run: torchrun with 2 CPU processes (gloo) gives the weights of one
process within float rounding, resumes a run, and each rank reads its share of every batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from mixer_lib.distributed import RankShare, World
from mixer_lib.train import RunConfig, train
from tests.test_data import make_image_folder

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def options(data: Path) -> list[str]:
    return ["--dataset", f"imagefolder:{data}", "--variant", "Mixer-T/4", "--img-size", "16",
            "--recipe", "finetune", "--steps", "6", "--batch-size", "16", "--accum-steps", "2",
            "--lr", "0.05", "--warmup-steps", "2", "--num-workers", "0", "--seed", "1",
            "--eval-every", "3", "--checkpoint-every", "3", "--log-every", "1",
            "--no-progress"]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def max_relative_difference(a: dict, b: dict) -> float:
    """Largest |a - b| over all weights, relative to the largest |a|."""
    scale = max(float(v.abs().max()) for v in a.values())
    return max(float((a[k] - b[k]).abs().max()) for k in a) / scale


def test_rank_shares_cover_each_micro_batch_in_order():
    stream = list(range(24))
    shares = [list(RankShare(stream, 8, World(r, 2))) for r in range(2)]
    assert shares[0] == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19]
    assert shares[1] == [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23]
    assert list(RankShare(stream, 8, World())) == stream


def test_two_processes_equal_one(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=16)
    one = subprocess.run([sys.executable, "-m", "mixer_lib.train", "--out",
                          str(tmp_path / "one"), *options(data)], capture_output=True,
                         text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([*TORCHRUN, "--nproc_per_node=2", "-m", "mixer_lib.train", "--out",
                          str(tmp_path / "two"), *options(data)], capture_output=True,
                         text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert max_relative_difference(a, b) <= 1e-4
    record = json.loads((tmp_path / "two" / "results.json").read_text())
    assert record["environment"]["world_size"] == 2
    # one writer: the run folder holds exactly one run's files
    names = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert names == sorted(["checkpoint.pt", "checkpoint.prev.pt", "config.json",
                            "metrics.jsonl", "results.json", "run.lock"])
    rows = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r and "split" not in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows if "split" in r] == [3, 6]  # evaluated once, on rank 0


def test_a_one_process_run_resumes_on_two(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=16)
    cfg = RunConfig(dataset=f"imagefolder:{data}", variant="Mixer-T/4", img_size=16,
                    recipe="finetune", steps=6, batch_size=16, accum_steps=2, lr=0.05,
                    warmup_steps=2, num_workers=0, seed=1, eval_every=3, checkpoint_every=3)
    full = train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "split", stop_after=3, progress=False)
    two = subprocess.run([*TORCHRUN, "--nproc_per_node=2", "-m", "mixer_lib.train", "--out",
                          str(tmp_path / "split"), "--resume", *options(data)],
                         capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    record = json.loads((tmp_path / "split" / "results.json").read_text())
    assert record["resumed_from"] == 3
    assert max_relative_difference(weights(tmp_path / "full"),
                                   weights(tmp_path / "split")) <= 1e-4
    assert abs(record["top1"] - full["top1"]) < 1e-9
