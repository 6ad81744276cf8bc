"""Data: preprocessing, subsetting, splits, on-disk formats (generated here), errors."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets as tvd

from mixer_lib import cifar
from mixer_lib.data import DataConfig, balanced_subset, build_split
from mixer_lib.datasets import DataError, base_dataset, class_names, resolve_dataset
from mixer_lib.sampling import EpochSampler
from mixer_lib.transforms import eval_transform, train_transform


def _img(color, size=(40, 30)) -> Image.Image:
    return Image.new("RGB", size, color)


def make_image_folder(root: Path, classes=("cat", "dog", "emu"), per_class=6,
                      splits=("train", "test")) -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.jpg")
    return root


# ----------------------------------------------------------------------- preprocessing


def test_pixels_are_scaled_to_minus_one_one_as_official():
    black, white = eval_transform(224)(_img((0, 0, 0))), eval_transform(224)(_img((255,) * 3))
    assert black.shape == (3, 224, 224)
    assert torch.all(black == -1.0) and torch.all(white == 1.0)
    gray = eval_transform(8)(_img((51, 51, 51)))
    assert torch.allclose(gray, torch.full_like(gray, (51 - 127.5) / 127.5), atol=1e-6)


def test_eval_resize_and_center_crop():
    """crop_pct=1: the whole image squashed to img_size (the official input pipeline);
    crop_pct<1: the smaller side to floor(img_size / crop_pct), aspect kept, then the centre
    img_size square. Compared pixel for pixel with PIL doing those steps by hand."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))

    def signed(im: Image.Image) -> torch.Tensor:
        return (torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 - 0.5) / 0.5

    squashed = img.resize((16, 16), Image.BILINEAR)
    torch.testing.assert_close(eval_transform(16)(img), signed(squashed))
    # 16 / 0.875 -> 18: 32 x 64 becomes 18 x 36; the centre 16 x 16 starts at (1, 10)
    cropped = img.resize((36, 18), Image.BILINEAR).crop((10, 1, 26, 17))
    torch.testing.assert_close(eval_transform(16, crop_pct=0.875)(img), signed(cropped))
    tall = img.transpose(Image.TRANSPOSE)  # 64 x 32: the width is the smaller side now
    cropped_tall = tall.resize((18, 36), Image.BILINEAR).crop((1, 10, 17, 26))
    torch.testing.assert_close(eval_transform(16, crop_pct=0.875)(tall), signed(cropped_tall))


def test_train_transform_is_inception_crop_and_flip():
    t = train_transform(32)
    crop = t.transforms[0]
    assert crop.scale == (0.05, 1.0) and crop.ratio == pytest.approx((0.75, 4 / 3))
    assert type(t.transforms[1]).__name__ == "RandomHorizontalFlip"
    x = t(_img((10, 20, 30), (50, 50)))
    assert x.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1


# -------------------------------------------------------------------------- subsetting


def test_balanced_subset_is_deterministic_and_balanced():
    targets = [i % 4 for i in range(400)]
    a, b = balanced_subset(targets, 40, seed=3), balanced_subset(targets, 40, seed=3)
    assert a == b and len(a) == 40
    assert np.bincount([targets[i] for i in a]).tolist() == [10, 10, 10, 10]
    assert balanced_subset(targets, 40, seed=4) != a
    assert len(balanced_subset(targets, None, 0)) == 400


def test_epoch_sampler_resumes_mid_run():
    full = list(EpochSampler(10, seed=1, start=0, total=35))
    resumed = list(EpochSampler(10, seed=1, start=17, total=35))
    assert resumed == full[17:]
    assert sorted(i for i, _ in full[:10]) == list(range(10))  # each epoch is a permutation


def test_splits_are_disjoint_and_val_is_held_out_of_train(tmp_path):
    root = make_image_folder(tmp_path / "tree", per_class=50)
    cfg = DataConfig(dataset=f"imagefolder:{root}", img_size=16, holdout_dev=True)
    train, val = build_split(cfg, "train"), build_split(cfg, "val")
    assert len(val) == 3 and len(train) == 147  # 2% of 150 held out
    assert not set(train.indices) & set(val.indices)
    assert len(build_split(cfg, "test")) == 150
    # without the hold-out (final runs) training uses the whole training split
    whole = build_split(dataclasses.replace(cfg, holdout_dev=False), "train")
    assert sorted(whole.indices) == list(range(150))


# ----------------------------------------------------------------- real data (shared/)


def test_real_cifar10_jpeg(cifar_root):
    cfg = DataConfig(dataset="cifar10-jpeg", root=str(cifar_root), img_size=32,
                     train_limit=100, eval_limit=50)
    train, test = build_split(cfg, "train"), build_split(cfg, "test")
    assert len(base_dataset("cifar10-jpeg", "train", cifar_root)) == 50_000
    assert len(base_dataset("cifar10-jpeg", "test", cifar_root)) == 10_000
    assert class_names(train.base)[:3] == ["airplane", "automobile", "bird"]
    assert np.bincount(train.targets).tolist() == [10] * 10
    x, y = test[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10


# ------------------------------------------------------- torchvision formats, generated


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_cifar_batches(base: Path, name: str, per_class: int = 2) -> Path:
    """CIFAR batches in the python-pickle format under ``base`` (``<root>/<name>``), with
    ``per_class`` images of every class in every batch file."""
    spec = cifar.SPECS[name]
    n = 10 if name == "cifar10" else 100
    folder = base / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for f in spec.train_files + spec.test_files:
        with open(folder / f, "wb") as out:
            pickle.dump({"data": rng.integers(0, 255, (per_class * n, 3072), dtype=np.uint8),
                         spec.label_key: [i % n for i in range(per_class * n)]}, out)
    with open(folder / spec.meta_file, "wb") as out:
        pickle.dump({spec.names_key: [f"class{i}" for i in range(n)]}, out)
    return folder


@pytest.mark.parametrize("name,n", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_python_format(tmp_path, name, n):
    make_cifar_batches(tmp_path / name, name)
    cfg = DataConfig(dataset=name, root=str(tmp_path), img_size=16)
    test = build_split(cfg, "test")
    assert len(test) == 2 * n * len(cifar.SPECS[name].test_files)
    assert class_names(test.base)[1] == "class1"
    x, y = test[3]
    assert x.shape == (3, 16, 16) and y == 3 % n
    assert len(build_split(cfg, "train")) == 2 * n * len(cifar.SPECS[name].train_files)


def test_cifar_pixels_are_read_in_torchvisions_order(tmp_path):
    """Rows are 1024 red, 1024 green, 1024 blue bytes, row-major: the same image torchvision's
    CIFAR10 gives."""
    folder = make_cifar_batches(tmp_path / "cifar10", "cifar10")
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.arange(1024) % 256])
    batch = pickle.load(open(folder / "test_batch", "rb"))  # noqa: SIM115
    batch["data"][0] = row
    pickle.dump(batch, open(folder / "test_batch", "wb"))  # noqa: SIM115
    img = np.asarray(cifar.CifarBatches("cifar10", tmp_path / "cifar10", train=False)[0][0])
    assert img.shape == (32, 32, 3)
    assert (img[..., 0] == 10).all() and (img[..., 1] == 20).all()
    assert img[0, 5, 2] == 5 and img[1, 0, 2] == 32


def test_cifar_download_from_a_mirror_once_for_concurrent_processes(tmp_path, monkeypatch):
    """Four processes ask for CIFAR-10 at once from a local mirror: one archive, one
    extraction, every process reads the same data."""
    import http.server
    import subprocess
    import sys
    import tarfile
    import threading

    src = tmp_path / "src"
    make_cifar_batches(src, "cifar10")
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: Handler(*a, directory=str(served), **k))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    root = tmp_path / "data"
    code = ("import sys; from mixer_lib.data import DataConfig, build_split; "
            "ds = build_split(DataConfig(dataset='cifar10', root=sys.argv[1], img_size=8, "
            "download=True), 'test'); print(len(ds), float(ds[0][0].sum()))")
    env = {**os.environ, "MIXER_DATA_MIRROR": f"http://127.0.0.1:{httpd.server_address[1]}"}
    try:
        procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        httpd.shutdown()
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert len({o[0] for o in outs}) == 1 and outs[0][0].startswith("20 ")
    assert hits == ["/cifar-10-python.tar.gz"]  # downloaded once
    assert sorted(p.name for p in (root / "cifar10").iterdir()
                  if not p.name.startswith(".")) == ["cifar-10-batches-py",
                                                     "cifar-10-python.tar.gz"]


def test_pets_format(tmp_path):
    base = tmp_path / "pets" / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    breeds = ["Abyssinian", "american_bulldog"]
    for split in ("trainval", "test"):
        lines = []
        for b, breed in enumerate(breeds):
            for i in range(3):
                image_id = f"{breed}_{split}{i}"
                _img((b * 100, 0, 0)).save(base / "images" / f"{image_id}.jpg")
                lines.append(f"{image_id} {b + 1} {b + 1} 1")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    train = build_split(DataConfig(dataset="pets", root=str(tmp_path), img_size=16,
                                   holdout_dev=True), "train")
    assert len(train) == 6 - 1  # 10% held out as the dev slice
    assert class_names(train.base) == ["Abyssinian", "American Bulldog"]


def test_flowers102_format(tmp_path, monkeypatch):
    from scipy.io import savemat

    base = tmp_path / "flowers102" / "flowers-102"
    (base / "jpg").mkdir(parents=True)
    for i in range(1, 10):
        _img((i * 20, 0, 0)).save(base / "jpg" / f"image_{i:05d}.jpg")
    savemat(base / "imagelabels.mat", {"labels": np.array([[1, 2, 3, 1, 2, 3, 1, 2, 3]])})
    savemat(base / "setid.mat", {"trnid": np.array([[1, 2, 3]]), "valid": np.array([[4, 5, 6]]),
                                 "tstid": np.array([[7, 8, 9]])})
    files = dict(tvd.Flowers102._file_dict)
    files["label"] = ("imagelabels.mat", _md5(base / "imagelabels.mat"))
    files["setid"] = ("setid.mat", _md5(base / "setid.mat"))
    monkeypatch.setattr(tvd.Flowers102, "_file_dict", files)
    cfg = DataConfig(dataset="flowers102", root=str(tmp_path), img_size=16)
    assert len(build_split(cfg, "train")) == 6  # train + val, as the paper's protocol
    test = build_split(cfg, "test")
    assert len(test) == 3 and test.targets == [0, 1, 2]


def test_imagenet_class_folder_layout(tmp_path):
    root = tmp_path / "imagenet"
    make_image_folder(root, classes=("n01440764", "n01443537"), per_class=3,
                      splits=("train", "val"))
    cfg = DataConfig(dataset="imagenet1k", root=str(tmp_path), img_size=16)
    assert len(build_split(cfg, "test")) == 6
    assert class_names(build_split(cfg, "test").base) == ["n01440764", "n01443537"]


# ------------------------------------------------------------------------------ errors


def test_missing_data_offline_says_what_to_put_where(tmp_path):
    with pytest.raises(DataError, match=r"cifar10 not found or incomplete under .*cifar10.*"
                                        r"cifar-10-python.tar.gz.*MIXER_DATA_ROOT"):
        build_split(DataConfig(dataset="cifar10", root=str(tmp_path)), "test")
    with pytest.raises(DataError, match=r"imagenet1k: folder .*imagenet/val not found.*"
                                        r"ILSVRC2012"):
        build_split(DataConfig(dataset="imagenet1k", root=str(tmp_path)), "test")


def test_offline_cifar10_falls_back_to_the_jpeg_copy_and_says_so(tmp_path, monkeypatch):
    import mixer_lib.datasets as data

    with pytest.raises(DataError, match="cifar10 not found"):  # no copy of either
        resolve_dataset("cifar10", tmp_path)
    make_image_folder(tmp_path / "cifar10-jpeg")
    used, note = resolve_dataset("cifar10", tmp_path, download=False)
    assert used == "cifar10-jpeg"
    assert "stand-in 'cifar10-jpeg'" in note and "do not count as cifar10" in note
    assert resolve_dataset("cifar10-jpeg", tmp_path) == ("cifar10-jpeg", None)
    assert resolve_dataset("cifar100", tmp_path) == ("cifar100", None)  # no stand-in
    with pytest.raises(DataError, match="unknown dataset 'cifar11'"):
        resolve_dataset("cifar11", tmp_path)

    with socket.socket() as sock:  # a mirror nothing answers: the download fails
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MIXER_DATA_MIRROR", f"http://127.0.0.1:{sock.getsockname()[1]}")
    assert resolve_dataset("cifar10", tmp_path, download=True)[0] == "cifar10-jpeg"
    with pytest.raises(DataError, match="could not download"):
        resolve_dataset("cifar10", tmp_path, download=True, stand_in=False)
    assert not (tmp_path / "cifar10").exists()  # no empty folder left in the data root
    monkeypatch.setattr(data, "base_dataset", lambda *a, **k: object())  # cifar10 present
    assert resolve_dataset("cifar10", tmp_path) == ("cifar10", None)


def test_wrong_data_root_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXER_DATA_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"cifar10-jpeg: folder .*nowhere/cifar10-jpeg/train "
                                        r"not found under data root .*nowhere"):
        build_split(DataConfig(dataset="cifar10-jpeg"), "train")


def test_unknown_dataset_and_split_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match=r"unknown dataset 'cifar11'; choose one of cifar10"):
        build_split(DataConfig(dataset="cifar11"), "train")
    root = make_image_folder(tmp_path / "t")
    with pytest.raises(DataError, match="unknown split 'valid'"):
        build_split(DataConfig(dataset=f"imagefolder:{root}"), "valid")


def test_corrupt_image_names_the_file(tmp_path):
    root = make_image_folder(tmp_path / "tree", per_class=2)
    bad = root / "train" / "cat" / "0.jpg"
    bad.write_bytes(b"this is not a jpeg")
    cfg = DataConfig(dataset=f"imagefolder:{root}", img_size=8)
    with pytest.raises(DataError, match=rf"cannot read image file {bad}.*replace it"):
        build_split(cfg, "train")  # small images are decoded up front: before any training
    ds = build_split(dataclasses.replace(cfg, keep_decoded=False), "train")
    index = ds.indices.index(ds.base.samples.index((str(bad), 0)))
    with pytest.raises(DataError, match=rf"cannot read image file {bad}.*replace it"):
        ds[index]


def test_kept_decoded_images_give_the_same_samples(cifar_root, tmp_path):
    """Decoding once changes nothing a run sees: every augmented sample and label is the same
    as when each JPEG is opened per sample; images that are large or of mixed sizes, or a
    split over the memory budget, are not kept."""
    cfg = DataConfig(dataset="cifar10-jpeg", root=str(cifar_root), img_size=32,
                     train_limit=600, classes=(5, 7, 9))
    kept, files = build_split(cfg, "train"), build_split(
        dataclasses.replace(cfg, keep_decoded=False), "train")
    assert kept.decoded is not None and kept.decoded.shape == (600, 32, 32, 3)
    assert files.decoded is None
    for i in range(0, 600, 7):
        (a, la), (b, lb) = kept[(i, 1000 + i)], files[(i, 1000 + i)]
        assert torch.equal(a, b) and la == lb
    test_cfg = dataclasses.replace(cfg, eval_limit=90)
    kept_test, files_test = build_split(test_cfg, "test"), build_split(
        dataclasses.replace(test_cfg, keep_decoded=False), "test")
    assert kept_test.decoded is not None
    for i in range(0, 90, 11):  # evaluation: no seed, no randomness
        assert torch.equal(kept_test[i][0], files_test[i][0])
        assert kept_test[i][1] == files_test[i][1]
    assert not files.keep_decoded(budget_bytes=600 * 32 * 32 * 3 - 1)
    mixed = make_image_folder(tmp_path / "mixed", per_class=2)
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(mixed / "train" / "cat" / "1.jpg")
    assert build_split(DataConfig(dataset=f"imagefolder:{mixed}", img_size=8),
                       "train").decoded is None
    large = build_split(DataConfig(dataset=f"imagefolder:{mixed}", img_size=8,
                                   keep_decoded=False), "test")
    assert not large.keep_decoded(max_side=16) and large.decoded is None  # 24 px > 16


def test_signed_tensor_equals_torchvision_to_tensor_and_normalize(cifar_root):
    """The fast input scaling gives the same values, bit for bit, as ToTensor + Normalize on
    real JPEGs at their size and upsampled, and on grey and RGBA images."""
    import torchvision.transforms as T

    from mixer_lib.transforms import MEAN, STD, ToSignedTensor

    reference = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    fast = ToSignedTensor()
    files = sorted((cifar_root / "cifar10-jpeg" / "test").glob("*/*.jpg"))[::500]
    assert len(files) >= 20
    for path in files:
        img = Image.open(path).convert("RGB")
        for im in (img, img.resize((64, 48)), img.transpose(Image.FLIP_LEFT_RIGHT)):
            out = fast(im)
            assert out.dtype == torch.float32 and out.is_contiguous()
            assert torch.equal(out, reference(im))
    grey, rgba = img.convert("L"), img.convert("RGBA")
    assert torch.equal(fast(grey), reference(grey.convert("RGB")))
    assert torch.equal(fast(rgba), reference(rgba.convert("RGB")))
    assert fast(img).min() >= -1 and fast(img).max() <= 1


@pytest.mark.parametrize("randaugment, img_size", [(None, 24), ((2, 9), 24), (None, 32),
                                                   (None, 40)])
def test_batched_fetch_gives_the_samples_of_the_per_sample_path(cifar_root, randaugment,
                                                                 img_size):
    """``__getitems__`` (what DataLoader calls for a batch) returns, bit for bit, what
    ``[ds[i] for i in items]`` returns: decoded CIFAR pixels and JPEG files, with and without
    RandAugment, cropped to a smaller, the same (the study's) and a larger size, through a
    DataLoader with a worker; the caller's random streams are left as they were; batches
    without seeds or without a common size take the per-sample path."""
    import random

    from torch.utils.data import DataLoader

    cfg = DataConfig(dataset="cifar10-jpeg", root=cifar_root, img_size=img_size,
                     train_limit=300, randaugment=randaugment)
    for ds in (build_split(cfg, "train"),
               build_split(dataclasses.replace(cfg, keep_decoded=False), "train")):
        items = [(i, 7_000 + 13 * i) for i in range(0, 300, 3)]
        random.seed(5)
        torch.manual_seed(5)
        before = (random.random(), torch.rand(1))
        random.seed(5)
        torch.manual_seed(5)
        batched = ds.__getitems__(items)
        assert (random.random(), torch.rand(1)) == before  # streams untouched
        single = [ds[i] for i in items]
        assert len(batched) == len(single) == len(items)
        for (a, la), (b, lb) in zip(batched, single, strict=True):
            assert a.shape == (3, img_size, img_size) and torch.equal(a, b) and la == lb
        loader = DataLoader(ds, batch_size=25, sampler=items, num_workers=1)
        x, y = next(iter(loader))
        assert torch.equal(x, torch.stack([a for a, _ in single[:25]]))
        assert y.tolist() == [label for _, label in single[:25]]
    torch.manual_seed(3)
    random.seed(3)
    unseeded = ds.__getitems__([0, 1])  # items without seeds draw from the caller's streams
    torch.manual_seed(3)
    random.seed(3)
    assert all(torch.equal(a, ds[i][0]) for i, (a, _) in enumerate(unseeded))


def test_batched_fetch_without_a_common_size_takes_the_per_sample_path(tmp_path):
    root = make_image_folder(tmp_path / "sizes", per_class=2)
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(root / "test" / "cat" / "odd.jpg")
    ds = build_split(DataConfig(dataset=f"imagefolder:{root}", img_size=8, crop_pct=1.0,
                                keep_decoded=False), "test")
    ds.transform.transforms = ds.transform.transforms[1:]  # no resize: sizes differ
    items = [(i, 11 + i) for i in range(len(ds))]
    got, want = ds.__getitems__(items), [ds[i] for i in items]
    assert len({t.shape for t, _ in got}) > 1
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(got, want, strict=True))


def test_study_loader_crops_decoded_batches_together(cifar_root, monkeypatch):
    """The study's loader (decoded 32 px images, Inception crop and flip at 32 px) resamples
    every sample of a batch in one call; JPEG files and RandAugment keep the PIL path."""
    from mixer_lib import batch_augment

    calls = []
    real = batch_augment.upscaled_crops
    monkeypatch.setattr(batch_augment, "upscaled_crops",
                        lambda pixels, *a: calls.append(len(pixels)) or real(pixels, *a))
    cfg = DataConfig(dataset="cifar10-jpeg", root=cifar_root, img_size=32, train_limit=100)
    items = [(i, 31 + i) for i in range(50)]
    study = build_split(cfg, "train")
    study.__getitems__(items)
    assert calls == [50] and study.fetch_form() == "batched-crop"
    for other in (dataclasses.replace(cfg, keep_decoded=False),
                  dataclasses.replace(cfg, randaugment=(2, 15))):
        ds = build_split(other, "train")
        ds.__getitems__(items)
        assert ds.fetch_form() == "per-sample"
    assert calls == [50]
    assert build_split(cfg, "test").fetch_form() == "per-sample"


def test_uint8_hand_over_gives_the_float_samples_once_scaled(cifar_root, tmp_path):
    """What a GPU run's loader hands over (uint8 pixels, a quarter of the bytes) is, once
    ``to_device`` scales it, bit for bit the float32 batch of the CPU path: decoded CIFAR
    pixels cropped together, JPEG files cropped one by one, and RandAugment, through a
    DataLoader with a worker; every uint8 value maps to ToSignedTensor's value; transforms
    that do not end in the official scaling (an input permutation) are not switched."""
    from torch.utils.data import DataLoader

    from mixer_lib.device_decode import to_device
    from mixer_lib.transforms import ToSignedTensor

    every = torch.arange(256, dtype=torch.uint8).view(1, 16, 16, 1).expand(2, 16, 16, 3)
    fast = ToSignedTensor()
    assert torch.equal(fast.scale(fast.layout(every)), fast.batch(every))
    cfg = DataConfig(dataset="cifar10-jpeg", root=cifar_root, img_size=40, train_limit=120)
    items = [(i, 900 + 7 * i) for i in range(0, 120, 4)]
    for variant in (cfg, dataclasses.replace(cfg, keep_decoded=False),
                    dataclasses.replace(cfg, randaugment=(2, 9)),
                    dataclasses.replace(cfg, img_size=32)):  # the study's batched crop
        ds = build_split(variant, "train")
        floats = torch.stack([x for x, _ in ds.__getitems__(items)])
        assert ds.pixels_form() == "float32" and ds.hand_over_uint8()
        assert ds.pixels_form() == "uint8, scaled on the device"
        got = ds.__getitems__(items)
        pixels = torch.stack([x for x, _ in got])
        assert pixels.dtype == torch.uint8 and pixels.shape == floats.shape
        assert torch.equal(to_device(pixels, torch.device("cpu")), floats)
        x, y = next(iter(DataLoader(ds, batch_size=10, sampler=items, num_workers=1)))
        assert x.dtype == torch.uint8 and torch.equal(to_device(x, torch.device("cpu")),
                                                      floats[:10])
        assert y.tolist() == [label for _, label in got[:10]]
    permuted = build_split(dataclasses.replace(cfg, permutation="global"), "train")
    assert not permuted.hand_over_uint8() and permuted.pixels_form() == "float32"
    assert permuted.__getitems__(items[:2])[0][0].dtype == torch.float32
    assert to_device(floats, torch.device("cpu")) is floats  # float batches pass unchanged
