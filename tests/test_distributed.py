"""Several processes, one run: torchrun with 2 CPU processes (gloo) gives the weights of one
process within float rounding, resumes a run, and each rank reads its share of every batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from mixer_lib.config import RunConfig
from mixer_lib.distributed import RankShare, World
from mixer_lib.train import train
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


COLLECTIVES = r'''
import sys, time
from pathlib import Path
import torch.distributed as dist
from mixer_lib.distributed import collective_device, setup, teardown

world = setup("cpu")
devices = []
real = dist.all_reduce
def recording(t, *a, **k):
    devices.append(t.device)
    return real(t, *a, **k)
dist.all_reduce = recording
assert world.sum([1.0, 2.0]) == [2.0, 4.0]
assert world.minimum(float(world.rank)) == 0.0
assert world.agree(True) and not world.agree(world.rank == 0)
world.barrier()
marker = Path(sys.argv[1])
def work():
    if world.main:
        time.sleep(1.0)  # the other rank must wait for this
        marker.write_text("rank 0 was here")
    return marker.read_text()
assert world.main_first(work, "writing the marker") == "rank 0 was here"
expected = collective_device(dist.get_backend(), world.local_rank)
assert devices and all(d == expected for d in devices), (devices, expected)
# one write of one short line: two ranks' prints share a pipe, and print's separate writes
# of the text and its newline interleaved once ("okok gloo cpu 6\n gloo cpu 6\n")
sys.stdout.write(f"ok {dist.get_backend()} {expected} {len(devices)}\n")
sys.stdout.flush()
teardown(world)  # gloo's threads stopped before the interpreter exits (a rank aborted once)
'''


def test_collectives_use_the_device_their_backend_serves(tmp_path):
    script = tmp_path / "collectives.py"
    script.write_text(COLLECTIVES)
    done = subprocess.run([*TORCHRUN, "--nproc_per_node=2", str(script), str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("ok gloo cpu") == 2


def test_gpu_ranks_select_their_own_gpu_and_nccl(monkeypatch):
    """Under torchrun on GPUs (simulated): each rank selects cuda:LOCAL_RANK before joining,
    NCCL is bound to it, and the world's collectives use it."""
    import torch.distributed as dist

    from mixer_lib import distributed
    from mixer_lib.distributed import collective_device, setup

    calls = {}
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.torch.cuda, "set_device",
                        lambda d: calls.setdefault("set_device", d))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group",
                        lambda backend, **kw: calls.setdefault("init", (backend, kw)))
    monkeypatch.setattr(dist, "get_rank", lambda: 3)
    monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    world = setup("cuda")
    assert calls["set_device"] == torch.device("cuda:1")
    assert calls["init"] == ("nccl", {"device_id": torch.device("cuda:1")})
    assert (world.rank, world.size, world.local_rank, world.device) == \
        (3, 4, 1, torch.device("cuda:1"))
    assert collective_device("gloo", 1) == torch.device("cpu")
