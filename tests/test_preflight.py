"""Preflight: every item of the paper profile is found missing on an empty machine with its
fix, ready when its files are in the loader's format, and the memory plan per run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import namedtuple

import pytest

from mixer_lib import preflight, readiness
from mixer_lib.preflight import (
    disk_check,
    driver_check,
    memory_check,
    memory_plan,
    run_needs,
    shm_check,
)
from mixer_lib.profiles import jobs_for
from mixer_lib.readiness import (
    DOWNLOAD,
    NOT_READY,
    READY,
    checkpoint_check,
    dataset_check,
    imagenet_checks,
)
from tests.conftest import REPO
from tests.test_data import make_cifar_batches, make_image_folder

OFFLINE = "http://127.0.0.1:9"  # nothing answers there


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("MIXER_DATA_MIRROR", OFFLINE)
    monkeypatch.setattr(readiness, "DOWNLOAD_URLS", {k: f"{OFFLINE}/{k}"
                                                     for k in readiness.DOWNLOAD_URLS})
    monkeypatch.setattr("mixer_lib.checkpoints.BASE_URL", OFFLINE)
    monkeypatch.setattr(readiness, "REAL_URL", f"{OFFLINE}/real.json")


def test_paper_preflight_on_an_empty_machine_lists_every_item_and_exits_2(tmp_path):
    env = {"MIXER_DATA_ROOT": str(tmp_path / "data"), "MIXER_CACHE_DIR": str(tmp_path / "c"),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mixer_lib.preflight", "--profile", "paper",
                           "--gpus", "8"], capture_output=True, text=True, cwd=REPO, env=env)
    assert time.perf_counter() - t0 < 60
    assert done.returncode == 2, done.stderr
    out = done.stdout
    for item in ("GPUs (8 wanted)", "data: cifar10 ", "data: cifar100", "data: pets",
                 "data: flowers102", "data: imagenet1k", "checkpoint: imagenet21k/Mixer-B_16",
                 "ReaL labels"):
        line = next(x for x in out.splitlines() if x.startswith(item))
        assert NOT_READY in line, line
    assert out.count("fix: ") >= 8
    memory = [x for x in out.splitlines() if x.startswith("memory: finetune-")]
    assert len(memory) == 5 and all("8 GPU x" in x and "assumed 80 GiB" in x for x in memory)
    assert "nothing was run" in done.stderr


def test_datasets_ready_in_their_loaders_format(tmp_path, offline):
    make_cifar_batches(tmp_path / "cifar10", "cifar10")
    assert dataset_check("cifar10", tmp_path, download=False)[0].status == READY
    (missing,) = dataset_check("cifar100", tmp_path, download=True)
    assert missing.status == NOT_READY and "cannot be reached" in missing.detail
    assert "cifar-100-python/train" in missing.fix
    pet = tmp_path / "pets" / "oxford-iiit-pet"
    (pet / "images").mkdir(parents=True)
    (pet / "annotations").mkdir()
    assert dataset_check("pets", tmp_path, False)[0].status == NOT_READY
    for f in ("trainval.txt", "test.txt"):
        (pet / "annotations" / f).write_text("")
    assert dataset_check("pets", tmp_path, False)[0].status == READY
    make_image_folder(tmp_path / "cifar10-jpeg", per_class=1)
    assert dataset_check("cifar10-jpeg", tmp_path, False)[0].status == READY
    folder = f"imagefolder:{tmp_path / 'cifar10-jpeg'}"
    assert dataset_check(folder, tmp_path, False)[0].status == READY
    assert dataset_check(f"imagefolder:{tmp_path / 'nowhere'}", tmp_path, False)[0].status \
        == NOT_READY


def test_reachable_download_counts_as_will_download(tmp_path, monkeypatch):
    monkeypatch.setattr(readiness, "reachable", lambda url, timeout=5.0: None)
    (check,) = dataset_check("flowers102", tmp_path, download=True)
    assert check.status == DOWNLOAD and check.ok
    assert checkpoint_check("Mixer-B/16", "imagenet21k", tmp_path).status == DOWNLOAD


def test_imagenet_class_folders_and_validation_names(tmp_path, monkeypatch):
    monkeypatch.setattr(readiness, "IMAGENET_CLASSES", 2)
    monkeypatch.setattr(readiness, "IMAGENET_VAL_IMAGES", 4)
    base = tmp_path / "imagenet"
    for split in ("train", "val"):
        for wnid in ("n01440764", "n01443537"):
            (base / split / wnid).mkdir(parents=True)
    for i, wnid in enumerate(("n01440764", "n01440764", "n01443537", "n01443537"), 1):
        (base / "val" / wnid / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(b"")
    folders, names = imagenet_checks(base)
    assert folders.status == READY and names.status == READY
    (base / "val" / "n01443537" / "ILSVRC2012_val_00000004.JPEG").rename(
        base / "val" / "n01443537" / "img4.jpg")
    _, names = imagenet_checks(base)
    assert names.status == NOT_READY and "img4.jpg" in names.detail
    (base / "train" / "n99999999").mkdir()
    folders, _ = imagenet_checks(base)
    assert folders.status == NOT_READY and "not the same classes" in folders.detail


def test_cached_checkpoint_is_ready(tmp_path, offline):
    assert checkpoint_check("Mixer-B/16", "imagenet21k", tmp_path).status == NOT_READY
    (tmp_path / "imagenet21k_Mixer-B_16.npz").write_bytes(b"x" * 10)
    assert checkpoint_check("Mixer-B/16", "imagenet21k", tmp_path).status == READY
    assert checkpoint_check("Mixer-S/32", "imagenet21k", tmp_path).status == NOT_READY


def test_driver_against_the_torch_build():
    assert driver_check("13.0", "580.65.06").status == READY
    old = driver_check("13.0", "570.86.10")
    assert old.status == NOT_READY and "R580" in old.detail and "cu126" in old.fix
    assert driver_check(None, "580.1") is None and driver_check("13.0", None) is None


def test_memory_disk_and_shm_checks(tmp_path, monkeypatch):
    l16 = next(run_needs(j) for j in jobs_for("paper") if j.notebook == "finetune")
    l16 = l16.__class__(**{**l16.__dict__, "variant": "Mixer-L/16", "img_size": 448})
    assert memory_check(l16, memory_plan(l16, 1, 80 * 2**30), True).status == READY
    assert memory_check(l16, memory_plan(l16, 1, 4 * 2**30), True).status == NOT_READY
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: usage(0, 0, 2**30))
    disk = disk_check([l16], tmp_path, 0)
    assert disk.status == NOT_READY and "1.0 GiB free" in disk.detail
    shm = shm_check([(l16, memory_plan(l16, 8, 80 * 2**30))], 8)
    assert shm is None or (shm.status == NOT_READY and "--shm-size" in shm.fix)


def test_preflight_json(tmp_path):
    env = {"MIXER_DATA_ROOT": str(tmp_path), "MIXER_CACHE_DIR": str(tmp_path),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "mixer_lib.preflight", "--json", "--gpus",
                           "2", "--gpu-memory", "40"], capture_output=True, text=True,
                          cwd=REPO, env=env)
    record = json.loads(done.stdout)
    assert done.returncode == 2
    assert {p["world_size"] for p in record["plans"]} == {2}
    assert all(p["budget_bytes"] == 40 * 2**30 for p in record["plans"])


def test_preflight_refuses_zero_gpus(capsys):
    with pytest.raises(SystemExit) as stop:
        preflight.main(["--gpus", "0"])
    assert stop.value.code == 2 and "--gpus must be >= 1; got 0" in capsys.readouterr().err
