"""Training images decoded and augmented on the device (here the CPU stands in for it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mixer_lib.config import ConfigError, RunConfig
from mixer_lib.data import DataConfig, build_split
from mixer_lib.datasets import DataError
from mixer_lib.device_decode import EncodedBatch, EncodedJpegs, to_device
from mixer_lib.train import train
from tests.test_data import make_cifar_batches, make_image_folder


def _photos(root, n=6, size=(48, 36)):
    """Smooth images (JPEG keeps them close to their pixels), one a greyscale JPEG and one
    a PNG named .jpg (as ImageNet has), in two classes."""
    y, x = np.mgrid[0:size[1], 0:size[0]]
    for split in ("train", "test"):
        for c, name in enumerate(("a", "b")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(n):
                rgb = np.stack([(x * (3 + k) + 40 * c) % 256, (y * (2 + k)) % 256,
                                (x + y) * 2 % 256], -1).astype(np.uint8)
                img = Image.fromarray(rgb)
                if k == 1:
                    img = img.convert("L")
                img.save(folder / f"{k}.jpg", format="PNG" if k == 2 else "JPEG", quality=95)
    return root


def test_device_batches_follow_the_cpu_pipelines_crops_and_flips(tmp_path):
    """The same seeded crop boxes and flips as the PIL pipeline: each device-made image is
    close to the PIL-made one (another resampler), and far from its mirror image."""
    root = _photos(tmp_path / "data")
    cfg = DataConfig(dataset=f"imagefolder:{root}", img_size=32, keep_decoded=False)
    cpu = build_split(cfg, "train")
    encoded = EncodedJpegs(build_split(cfg, "train"))
    assert len(encoded) == len(cpu) == 12 and encoded.classes == cpu.classes
    items = [(i, 500 + 7 * i) for i in range(12)]
    loader = DataLoader(encoded, batch_size=12, sampler=items, collate_fn=encoded.collate,
                        num_workers=1)
    batch, labels = next(iter(loader))
    assert isinstance(batch, EncodedBatch) and labels.tolist() == [cpu[i][1] for i, _ in items]
    images = to_device(batch, torch.device("cpu"))
    assert images.shape == (12, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    want = torch.stack([cpu[item][0] for item in items])
    diff = (images - want).abs().mean((1, 2, 3))
    mirrored = (images.flip(-1) - want).abs().mean((1, 2, 3))
    assert diff.max() < 0.03, diff
    assert (mirrored > 5 * diff).sum() >= 10  # nearly every image is far from its mirror
    assert batch.flips.any() and not batch.flips.all()
    again = to_device(encoded.collate(encoded.__getitems__(items))[0], torch.device("cpu"))
    assert torch.equal(again, images)  # a function of (seed, position)


def test_device_decode_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(ConfigError, match="decode='cpu'"):
        RunConfig(dataset="cifar10-jpeg", decode="device", randaugment="2,15")
    with pytest.raises(ConfigError, match="decode='cpu'"):
        RunConfig(dataset="cifar10-jpeg", decode="device", permutation="global")
    root = _photos(tmp_path / "data", n=2)
    evaluation = build_split(DataConfig(dataset=f"imagefolder:{root}", img_size=32), "test")
    with pytest.raises(DataError, match="Inception crop"):
        EncodedJpegs(evaluation)  # a resize, not the training augmentation
    make_cifar_batches(tmp_path / "cifar10", "cifar10")
    pickled = build_split(DataConfig(dataset="cifar10", root=str(tmp_path), img_size=32),
                          "train")
    with pytest.raises(DataError, match="image files"):
        EncodedJpegs(pickled)


def test_a_run_trains_and_resumes_with_device_decoding(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=8)
    cfg = RunConfig(dataset=f"imagefolder:{root}", variant="Mixer-T/4", img_size=16,
                    recipe="scratch", steps=4, batch_size=8, eval_every=4, checkpoint_every=2,
                    log_every=1, num_workers=0, decode="device")
    full = train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "split", stop_after=2, progress=False)
    resumed = train(cfg, tmp_path / "split", resume=True, progress=False)
    assert resumed["top1"] == full["top1"]
    record = json.loads((tmp_path / "full" / "results.json").read_text())
    assert record["environment"]["loader_form"] == "device-decode"
    assert record["config"]["decode"] == "device"
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    # the CPU pipeline is another experiment: resuming with it is refused
    with pytest.raises(Exception, match="decode"):
        train(RunConfig(**{**cfg.__dict__, "decode": "cpu"}), tmp_path / "full", resume=True,
              progress=False)


def test_a_damaged_file_is_named(tmp_path):
    """A file whose header cannot be read stops in the worker; one whose data is cut short
    stops at decoding; both with the file named."""
    root = _photos(tmp_path / "data", n=3)
    encoded = EncodedJpegs(build_split(DataConfig(dataset=f"imagefolder:{root}", img_size=32,
                                                  keep_decoded=False), "train"))
    bad_header = root / "train" / "a" / "0.jpg"
    bad_header.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"a/0\.jpg"):
        encoded.__getitems__([(encoded.files.index(str(bad_header)), 1)])
    cut = root / "train" / "b" / "0.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (36, 48, 3)).astype(np.uint8)
    Image.fromarray(noise).save(cut, format="JPEG")  # mostly image data after the header
    data = cut.read_bytes()
    cut.write_bytes(data[:len(data) // 2])  # the header survives, the image data does not
    batch, _ = encoded.collate(encoded.__getitems__([(encoded.files.index(str(cut)), 1)]))
    with pytest.raises(DataError, match=r"b/0\.jpg"):
        to_device(batch, torch.device("cpu"))
