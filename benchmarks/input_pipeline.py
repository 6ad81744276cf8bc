"""Does the input pipeline keep up with the model? (issue 17, part 6)

In one run, on JPEGs of ImageNet-like size (stand-ins: real CIFAR-10 test images upsampled to
500 x 375 and re-encoded at quality 75, or smooth random images where that copy is absent):

* one worker: the fine-tuning recipe's training transform (decode, Inception crop to
  ``--img-size``, flip, scaling to [-1, 1]) in this process, batch after batch, images/s;
* the loader: ``DataLoader`` as the training loop builds it, for each ``--workers`` count,
  images/s in steady state;
* the model alone: a training update (forward, backward, momentum SGD step; bf16 autocast on
  a GPU, float32 on a CPU) of ``--variant`` on a ready batch, images/s;
* ``decode="device"`` (:mod:`mixer_lib.device_decode`), as the training loop runs it, for
  each ``--workers`` count: the workers read the files and draw the crops, the device
  (``torchvision.io.decode_jpeg`` on a GPU; here the CPU when there is none) decodes, crops,
  resizes and flips the batch, images/s.

It reports how many CPU workers the model needs (model rate / one worker's rate) and writes
``<out>/benchmark-input-<device>.json``.

    python benchmarks/input_pipeline.py --data-root ../shared/data            # CPU, minutes
    python benchmarks/input_pipeline.py --batch 128 --workers 1,4,8,16        # on a GPU
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mixer_lib import create_model  # noqa: E402
from mixer_lib.data import DataConfig, build_split  # noqa: E402
from mixer_lib.device_decode import EncodedJpegs, to_device  # noqa: E402
from mixer_lib.optim import make_optimizer  # noqa: E402
from mixer_lib.provenance import environment, write_json  # noqa: E402
from mixer_lib.sampling import EpochSampler, loader_kwargs  # noqa: E402
from mixer_lib.timing import window_rates  # noqa: E402

SIZE = (500, 375)  # a typical ImageNet photograph (width, height)


def make_standins(folder: Path, count: int, data_root: str | None) -> str:
    """``count`` JPEGs of 500 x 375 in an ImageFolder layout (two classes); returns what they
    were made from."""
    sources = sorted(Path(data_root).glob("cifar10-jpeg/test/*/*.jpg"))[:count] \
        if data_root else []
    rng = np.random.default_rng(0)
    for i in range(count):
        if sources:
            img = Image.open(sources[i % len(sources)]).convert("RGB").resize(SIZE,
                                                                              Image.BICUBIC)
        else:  # smooth random content: a small noise image upsampled
            small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize(SIZE, Image.BICUBIC)
        out = folder / "train" / f"c{i % 2}" / f"{i:05d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        img.save(out, quality=75)
    return ("real CIFAR-10 test images upsampled to 500x375, JPEG q75" if sources
            else "smooth random images 500x375, JPEG q75")


def one_worker_img_s(ds, batch: int, batches: int) -> float:
    """The library's batch fetch in this process, images/s (median over batches)."""
    n = len(ds)
    rates = []
    for b in range(batches + 1):
        items = [((b * batch + i) % n, 1_000 + b * batch + i) for i in range(batch)]
        t = time.perf_counter()
        ds.__getitems__(items)
        if b:  # the first batch warms the caches
            rates.append(batch / (time.perf_counter() - t))
    return statistics.median(rates)


def loader_img_s(ds, batch: int, workers: int, batches: int, device: torch.device) -> float:
    from torch.utils.data import DataLoader

    loader = DataLoader(ds, batch_size=batch, sampler=EpochSampler(len(ds), 0, total=10**9),
                        **loader_kwargs(device, workers))
    it = iter(loader)
    for _ in range(max(2, workers)):  # every worker's first batch
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batch * batches / (time.perf_counter() - t)


def model_alone_img_s(variant: str, img_size: int, batch: int, device: torch.device,
                      updates: int) -> float:
    model = create_model(variant, num_classes=1000, img_size=img_size).to(device)
    opt = make_optimizer(model.parameters(), "sgd", 0.01)
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    amp = device.type == "cuda"

    def update() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        if amp:
            torch.cuda.synchronize(device)

    return batch * statistics.median(window_rates(update, updates, 3, warmup=2))


def device_decode_img_s(ds, batch: int, workers: int, batches: int,
                        device: torch.device) -> float:
    """``decode="device"`` as the training loop runs it (:mod:`mixer_lib.device_decode`): the
    loader's workers read the files and draw each sample's crop and flip, the device decodes,
    crops, resizes and flips the batch; images/s in steady state."""
    from torch.utils.data import DataLoader

    encoded = EncodedJpegs(ds)
    loader = DataLoader(encoded, batch_size=batch, collate_fn=encoded.collate,
                        sampler=EpochSampler(len(encoded), 0, total=10**9),
                        **loader_kwargs(device, workers))
    it = iter(loader)

    def one_batch() -> None:
        to_device(next(it)[0], device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(max(2, workers)):  # every worker's first batch
        one_batch()
    t = time.perf_counter()
    for _ in range(batches):
        one_batch()
    return batch * batches / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=None,
                        help="where cifar10-jpeg/ is (stand-ins made from its test images)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=None,
                        help="default: 128 on a GPU, 8 on a CPU")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--workers", default=None,
                        help="comma-separated worker counts (default: 1 and 2 on a CPU, "
                             "1, 4, 8 and 16 on a GPU)")
    parser.add_argument("--variant", default="Mixer-B/16")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", default=str(REPO / "results" / "perf"))
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if args.device == "cuda" and not cuda:
        parser.error("--device cuda: torch sees no GPU")
    device = torch.device("cuda" if cuda else "cpu")
    batch = args.batch or (128 if cuda else 8)
    workers = [int(w) for w in (args.workers or ("1,4,8,16" if cuda else "1,2")).split(",")]
    if batch < 1 or args.images < batch or any(w < 0 for w in workers):
        parser.error("need --batch >= 1, --images >= --batch and worker counts >= 0")

    with tempfile.TemporaryDirectory() as tmp:
        made_from = make_standins(Path(tmp), args.images, args.data_root)
        ds = build_split(DataConfig(dataset=f"imagefolder:{tmp}", img_size=args.img_size,
                                    keep_decoded=False), "train")
        per_worker = one_worker_img_s(ds, batch, args.batches)
        by_workers = {w: loader_img_s(ds, batch, w, args.batches, device) for w in workers}
        on_device = {w: device_decode_img_s(ds, batch, w, args.batches, device)
                     for w in workers}
    model_rate = model_alone_img_s(args.variant, args.img_size, batch, device,
                                   updates=10 if cuda else 2)
    best = max(by_workers.values())
    record = {
        "benchmark": "input_pipeline", "images": made_from, "image_size": list(SIZE),
        "img_size": args.img_size, "batch": batch, "variant": args.variant,
        "transform": "fine-tuning recipe's train transform (Inception crop, flip, [-1, 1])",
        "one_worker_img_s": per_worker,
        "loader_img_s_by_workers": {str(w): r for w, r in by_workers.items()},
        "model_alone_train_img_s": model_rate,
        "model_precision": "bf16 autocast" if cuda else "float32",
        "workers_needed": math.ceil(model_rate / per_worker),
        "loader_over_model": best / model_rate,
        "device_decode_img_s_by_workers": {str(w): r for w, r in on_device.items()},
        "cpu_cores": len(os.sched_getaffinity(0)),
        "environment": environment(device),
    }
    out = Path(args.out) / f"benchmark-input-{record['environment']['device'].split()[0]}.json"
    write_json(out, record)
    print(f"{made_from}; {args.variant} at {args.img_size} px, batch {batch}")
    print(f"  one worker (this process)   {per_worker:8.1f} img/s")
    for w, r in by_workers.items():
        print(f"  loader, {w:2d} worker(s)       {r:8.1f} img/s")
    for w, r in on_device.items():
        print(f"  decode='device' on {device.type}, {w:2d} worker(s) {r:8.1f} img/s")
    print(f"  model alone (training)      {model_rate:8.1f} img/s "
          f"({record['model_precision']})")
    print(f"  the model needs {record['workers_needed']} worker(s) of this CPU; the best "
          f"loader measured gives {best / model_rate:.2f}x the model's rate")
    print(f"record: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
