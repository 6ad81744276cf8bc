"""Does the input pipeline keep up with the model? (issue 17, part 6)

In one run, on JPEGs of ImageNet-like size (stand-ins: real CIFAR-10 test images upsampled to
500 x 375 and re-encoded at quality 75, or smooth random images where that copy is absent):

* one worker: the fine-tuning recipe's training transform (decode, Inception crop to
  ``--img-size``, flip, scaling to [-1, 1]) in this process, batch after batch, images/s;
* the loader: ``DataLoader`` as the training loop builds it, for each ``--workers`` count,
  images/s in steady state;
* the model alone: the fine-tuning recipe's update (``mixer_lib.step.update``: forward,
  backward, clipping, momentum SGD; bf16 autocast on a GPU, float32 on a CPU) of
  ``--variant`` on one ready batch on the device, images/s over windows of consecutive
  updates, as the training log measures its own;
* ``decode="device"`` (:mod:`mixer_lib.device_decode`), as the training loop runs it, for
  each ``--workers`` count: the workers read the files and draw the crops, the device
  (``torchvision.io.decode_jpeg`` on a GPU; here the CPU when there is none) decodes, crops,
  resizes and flips the batch, images/s;
* the fine-tuning loop itself (``mixer_lib.train.train``, random weights, the loader's default
  workers) on the same files, for each ``--loop-decode``: the images/s of its logged windows
  (the first, with the workers' start, left out) against the model alone measured before
  and after the loops (the faster of the two), the target of issue 17 being >= 90 %.

It reports how many CPU workers the model needs (model rate / one worker's rate) and writes
``<out>/benchmark-input-<device>.json``, after each measurement (a run cut short by its time
limit keeps what it measured). A measurement that raises is listed under ``failed`` with its
error, the others still run, and the exit status is 1.

    python benchmarks/input_pipeline.py --data-root ../shared/data            # CPU, minutes
    python benchmarks/input_pipeline.py --batch 128 --workers 1,4,8,16        # on a GPU

The stand-ins' sources are taken from the class folders in turn (``--data-root``; on a GPU
machine without ``../shared``, ``scripts/carry-jpegs.sh`` copies some there first).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mixer_lib.config import RunConfig  # noqa: E402
from mixer_lib.data import DataConfig, build_split  # noqa: E402
from mixer_lib.device_decode import EncodedJpegs, to_device  # noqa: E402
from mixer_lib.distributed import World  # noqa: E402
from mixer_lib.optim import make_optimizer  # noqa: E402
from mixer_lib.provenance import device_name, device_tag, environment, write_json  # noqa: E402
from mixer_lib.rundir import set_aside_record  # noqa: E402
from mixer_lib.runtime import compute_dtype, execution_plan  # noqa: E402
from mixer_lib.sampling import EpochSampler, loader_kwargs  # noqa: E402
from mixer_lib.start import build_model  # noqa: E402
from mixer_lib.step import update  # noqa: E402
from mixer_lib.timing import attempt, exit_if_failed, window_rates  # noqa: E402
from mixer_lib.train import train  # noqa: E402

SIZE = (500, 375)  # a typical ImageNet photograph (width, height)


def standin_sources(data_root: str | None) -> list[Path]:
    """The CIFAR-10 test JPEGs under ``data_root``, the class folders taken in turn (one of
    each class, then the next of each, ...); none without a ``data_root``."""
    by_class = [sorted(d.glob("*.jpg")) for d in
                sorted(Path(data_root).glob("cifar10-jpeg/test/*"))] if data_root else []
    return [f for group in itertools.zip_longest(*by_class) for f in group if f]


def make_standins(folder: Path, count: int, data_root: str | None) -> str:
    """``count`` JPEGs of 500 x 375 in an ImageFolder layout (two classes, and four images
    of each in test/ for the loop's final evaluation) made from :func:`standin_sources` (or
    smooth random images where there are none); returns what they were made from."""
    sources = standin_sources(data_root)
    rng = np.random.default_rng(0)
    for i in range(count + 8):
        if sources:
            img = Image.open(sources[i % len(sources)]).convert("RGB").resize(SIZE,
                                                                              Image.BICUBIC)
        else:  # smooth random content: a small noise image upsampled
            small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize(SIZE, Image.BICUBIC)
        split = "train" if i < count else "test"
        out = folder / split / f"c{i % 2}" / f"{i:05d}.jpg"
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


def finetune_config(root: Path, variant: str, img_size: int, batch: int,
                    device: torch.device, updates: int, window: int) -> RunConfig:
    """The fine-tuning recipe's run on the stand-ins (random weights: no download here; a
    learning rate of the paper's grid that random weights do not diverge with), as the
    training loop executes it on ``device`` (micro-batches planned from its memory)."""
    cfg = RunConfig(dataset=f"imagefolder:{root}", variant=variant, recipe="finetune",
                    img_size=img_size, batch_size=batch, steps=updates, lr=0.003,
                    warmup_steps=1, device=str(device), log_every=window,
                    eval_every=10**6, checkpoint_every=10**6, eval_limit=8)
    return execution_plan(cfg.resolved(), device, World())[0]


def model_alone_img_s(cfg: RunConfig, device: torch.device, windows: int) -> float:
    """The fine-tuning recipe's update (:func:`mixer_lib.step.update`) of ``cfg``'s model on
    one batch already on the device, images/s: the median over ``windows`` windows of
    ``cfg.log_every`` consecutive updates (how the loop logs its own rate)."""
    model, _ = build_model(cfg, 2)
    model.to(device)
    optimizer = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum,
                               cfg.weight_decay)
    micro = cfg.batch_size // cfg.accum_steps
    x = torch.randn(micro, 3, cfg.img_size, cfg.img_size, device=device)
    batches = itertools.repeat((x, torch.randint(0, 2, (micro,), device=device)))
    steps = itertools.count()

    def one_update() -> None:  # synchronised: the loss is read back every micro-batch
        update(model, model, optimizer, batches, cfg, next(steps) % cfg.steps, 2, device,
               compute_dtype(cfg, device), World())

    rates = window_rates(one_update, cfg.log_every, windows, warmup=2)
    return cfg.batch_size * statistics.median(rates)


def loop_img_s(cfg: RunConfig, run_dir: Path) -> list[float]:
    """The images/s of the training loop's logged windows, the first (the workers' start)
    left out."""
    train(cfg, run_dir, progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    return [r["img_per_s"] for r in rows if "img_per_s" in r][1:]


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


def loop_summary(rates: list[float], model_rate: float) -> dict:
    """A loop's logged window rates as the record keeps them: their median, the windows, and
    the median's share of the model alone."""
    return {"loop_img_s": statistics.median(rates), "window_img_s": rates,
            "fraction_of_model_alone": statistics.median(rates) / model_rate}


def uint8_same_bits(ds, device: torch.device, count: int = 8) -> bool:
    """Whether a batch handed over as uint8 (:meth:`TransformedSubset.hand_over_uint8`) and
    scaled on ``device`` by the training step's :func:`to_device` equals, bit for bit, the
    same batch scaled to float32 in the loader."""
    items = [(i % len(ds), 7_000 + i) for i in range(count)]
    was = ds.uint8_out
    try:
        ds.uint8_out = False
        floats = torch.stack([x for x, _ in ds.__getitems__(items)])
        ds.uint8_out = True
        pixels = torch.stack([x for x, _ in ds.__getitems__(items)])
    finally:
        ds.uint8_out = was
    return pixels.dtype == torch.uint8 and torch.equal(to_device(pixels, device).cpu(), floats)


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
    parser.add_argument("--loop-decode", default="cpu,device",
                        help="the fine-tuning loop with these decode settings ('' = no loop)")
    parser.add_argument("--loop-workers", default="",
                        help="comma-separated worker counts for more decode=cpu loops "
                             "(default: only the loader's default)")
    parser.add_argument("--loop-updates", type=int, default=None,
                        help="updates of each loop (default: 48 on a GPU, 8 on a CPU)")
    parser.add_argument("--loop-window", type=int, default=None,
                        help="updates per logged window (default: 6 on a GPU, 2 on a CPU)")
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
    try:
        loop_workers = [int(w) for w in args.loop_workers.split(",") if w.strip()]
    except ValueError:
        parser.error(f"--loop-workers takes comma-separated integers; got {args.loop_workers!r}")
    if any(w < 0 for w in loop_workers):
        parser.error("--loop-workers: worker counts must be >= 0")
    decodes = [d for d in args.loop_decode.split(",") if d]
    if set(decodes) - {"cpu", "device"}:
        parser.error("--loop-decode takes cpu and/or device, comma-separated")
    window = args.loop_window or (6 if cuda else 2)
    updates = args.loop_updates or (48 if cuda else 8)
    if window < 1 or updates < 3 * window:
        parser.error("need --loop-window >= 1 and --loop-updates >= 3 windows (the first "
                     "window is left out)")

    out = Path(args.out) / f"benchmark-input-{device_tag(device_name(device))}.json"
    set_aside_record(out)
    failures: list[dict] = []  # measurements that raised: recorded, and the rest go on
    found: dict = {"alone": [], "by_workers": {}, "on_device": {}, "loops": {},
                   "by_loop_workers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        made_from = make_standins(Path(tmp), args.images, args.data_root)
        ds = build_split(DataConfig(dataset=f"imagefolder:{tmp}", img_size=args.img_size,
                                    keep_decoded=False), "train")
        if device.type != "cpu":  # as the training loop hands pixels to a GPU
            ds.hand_over_uint8()
        cfg = finetune_config(Path(tmp), args.variant, args.img_size, batch, device,
                              updates, window)

        def measured(what: str, fn, keep) -> None:
            """One measurement; the record rewritten after it, so a run cut short by its
            time limit keeps what it measured."""
            value = attempt(what, fn, failures)
            if value is not None:
                keep(value)
            write_json(out, input_record(found, failures, made_from, args, batch, cfg, ds,
                                         updates, window, device))

        measured("uint8 scaling", lambda: uint8_same_bits(ds, device),
                 lambda v: found.update(same_bits=v))
        measured("one worker", lambda: one_worker_img_s(ds, batch, args.batches),
                 lambda v: found.update(per_worker=v))
        for w in workers:
            measured(f"loader, {w} worker(s)",
                     lambda w=w: loader_img_s(ds, batch, w, args.batches, device),
                     lambda v, w=w: found["by_workers"].update({w: v}))
        for w in workers:
            measured(f"decode='device', {w} worker(s)",
                     lambda w=w: device_decode_img_s(ds, batch, w, args.batches, device),
                     lambda v, w=w: found["on_device"].update({w: v}))
        alone = partial(model_alone_img_s, cfg, device, windows=updates // window)
        measured("model alone", alone, found["alone"].append)
        for d in decodes:
            measured(f"loop, decode={d}",
                     lambda d=d: loop_img_s(dataclasses.replace(cfg, decode=d),
                                            Path(tmp) / f"run-{d}"),
                     lambda v, d=d: found["loops"].update({d: v}))
        for w in loop_workers:
            measured(f"loop, decode=cpu, {w} worker(s)",
                     lambda w=w: loop_img_s(dataclasses.replace(cfg, decode="cpu",
                                                                num_workers=w),
                                            Path(tmp) / f"run-cpu-{w}"),
                     lambda v, w=w: found["by_loop_workers"].update({w: v}))
        if decodes or loop_workers:  # and after them: a device whose speed drifts does not decide
            measured("model alone, after the loops", alone, found["alone"].append)
    report(json.loads(out.read_text()), device)
    print(f"record: {out}")
    exit_if_failed(failures, "measurement(s)")
    return 0


def input_record(found: dict, failures: list[dict], made_from: str, args, batch: int,
                 cfg: RunConfig, ds, updates: int, window: int, device: torch.device) -> dict:
    """The record of what :func:`main` has measured so far (``found``) and what failed."""
    alone, per_worker, cuda = found["alone"], found.get("per_worker"), device.type == "cuda"
    model_rate = max(alone) if alone else None
    by_workers = found["by_workers"]
    return {
        "benchmark": "input_pipeline", "images": made_from, "image_size": list(SIZE),
        "img_size": args.img_size, "batch": batch, "variant": args.variant,
        "transform": "fine-tuning recipe's train transform (Inception crop, flip, [-1, 1])",
        "loader_pixels": ds.pixels_form(),
        "uint8_scaling_same_bits": found.get("same_bits"),
        "one_worker_img_s": per_worker,
        "loader_img_s_by_workers": {str(w): r for w, r in by_workers.items()},
        "model_alone_train_img_s": model_rate,
        "model_alone_img_s_before_after": alone,
        "model_alone_update": "the fine-tuning recipe's (mixer_lib.step.update) on one "
                              "batch on the device, the median of windows of "
                              f"{window} updates, the faster of before and after the loops",
        "model_precision": "bf16 autocast" if cuda else "float32",
        "micro_batches": cfg.accum_steps,
        "workers_needed": (math.ceil(model_rate / per_worker)
                           if model_rate and per_worker else None),
        "loader_over_model": (max(by_workers.values()) / model_rate
                              if model_rate and by_workers else None),
        "device_decode_img_s_by_workers": {str(w): r for w, r in found["on_device"].items()},
        "loop": {d: loop_summary(rates, model_rate)
                 | {"workers": loader_kwargs(device, None)["num_workers"]}
                 for d, rates in found["loops"].items()} if model_rate else {},
        "loop_cpu_by_workers": {str(w): loop_summary(rates, model_rate)
                                for w, rates in found["by_loop_workers"].items()}
        if model_rate else {},
        "loop_updates": updates, "loop_window": window,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "failed": failures,
        "environment": environment(device),
    }


def report(record: dict, device: torch.device) -> None:
    """The record in a few lines (what was measured)."""
    print(f"{record['images']}; {record['variant']} at {record['img_size']} px, batch "
          f"{record['batch']}")
    if record["one_worker_img_s"]:
        print(f"  one worker (this process)   {record['one_worker_img_s']:8.1f} img/s")
    for w, r in record["loader_img_s_by_workers"].items():
        print(f"  loader, {int(w):2d} worker(s)       {r:8.1f} img/s")
    for w, r in record["device_decode_img_s_by_workers"].items():
        print(f"  decode='device' on {device.type}, {int(w):2d} worker(s) {r:8.1f} img/s")
    model_rate = record["model_alone_train_img_s"]
    if model_rate:
        print(f"  model alone (training)      {model_rate:8.1f} img/s "
              f"({record['model_precision']})")
    if record["workers_needed"] and record["loader_over_model"]:
        print(f"  the model needs {record['workers_needed']} worker(s) of this CPU; the best "
              f"loader measured gives {record['loader_over_model']:.2f}x the model's rate")
    for d, loop in record["loop"].items():
        print(f"  the fine-tuning loop, decode={d}, {loop['workers']} worker(s): "
              f"{loop['loop_img_s']:8.1f} img/s, {100 * loop['fraction_of_model_alone']:.0f}% "
              f"of the model alone")
    for w, loop in record["loop_cpu_by_workers"].items():
        print(f"  the fine-tuning loop, decode=cpu, {w} worker(s):   {loop['loop_img_s']:8.1f} "
              f"img/s, {100 * loop['fraction_of_model_alone']:.0f}% of the model alone")
    print(f"  pixels leave the loader as {record['loader_pixels']}; scaled on {device.type} "
          f"bit for bit as in the loader: {record['uint8_scaling_same_bits']}")


if __name__ == "__main__":
    raise SystemExit(main())
