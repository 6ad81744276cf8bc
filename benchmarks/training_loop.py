"""The study's training loop against the same model alone (issue: make the study cheap).

In one run, for the study model (default Mixer-T/4, 32 px, batch 128, the scratch recipe on
the real CIFAR-10 JPEG copy):

* model alone: forward, backward, clipping and AdamW update on a ready batch (images/s);
* the loop: ``mixer_lib.train.train`` for the same model and batch, data loading included
  (images/s of its logged windows, each segment's first window, with the workers' start,
  excluded);
* interleaved: the run is trained in ``--segments`` pieces (stopped and resumed, as a long run
  is), each between two model-alone measurements; the loop's fraction of the model alone is
  the median over segments of (segment's loop rate) / (the faster of the measurements beside
  it), so a machine whose speed drifts during the benchmark (a shared 2-core VM's does by
  10-20 %) does not decide the answer;
* like with like: both rates are images over the wall time of windows of ``log_every``
  consecutive updates, median over windows (the loop's logged ``img_per_s``; the model alone
  by ``timing.window_rates``). Records before 2026-11-26 16:00 divided the loop's window rate
  by the median of single model-alone updates, which leaves the slow updates out of the model
  alone only (5-8 % on this VM), so they understated the loop;
* where one update's time goes: data (the loader alone, fetching each batch at once as the
  library does and, for comparison, sample by sample), the model's forward and backward,
  the tanh GELU within the forward, the optimiser step;
* the CPU's measured fp32 matrix-multiply peak, and the model's training FLOP/s as a fraction
  of it (training = 3 x forward FLOPs).

    python benchmarks/training_loop.py --data-root ../shared/data  # 240 updates, 8 segments

Prints the table and writes ``results/study/benchmark-loop-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mixer_lib.config import RunConfig  # noqa: E402
from mixer_lib.flops import analytic_flops  # noqa: E402
from mixer_lib.optim import clip_grad_norm, make_optimizer  # noqa: E402
from mixer_lib.provenance import device_tag, environment, write_json  # noqa: E402
from mixer_lib.runtime import data_config  # noqa: E402
from mixer_lib.sampling import loader_kwargs  # noqa: E402
from mixer_lib.start import build_model  # noqa: E402
from mixer_lib.timing import median_seconds, window_rates  # noqa: E402
from mixer_lib.train import train  # noqa: E402


def matmul_peak_gflops(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / median_seconds(lambda: a @ b, repeats) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--variant", default="Mixer-T/4")
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--updates", type=int, default=240)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--train-limit", type=int, default=None,
                        help="a class-balanced subset of the training images (default all)")
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--out", default=str(REPO / "results" / "study"))
    args = parser.parse_args(argv)

    if args.segments < 1 or args.updates < 2 * args.segments:
        parser.error("need --segments >= 1 and at least 2 updates per segment")
    log_every = max(1, min(10, args.updates // (3 * args.segments)))
    cfg = RunConfig(dataset="cifar10-jpeg", variant=args.variant, recipe="scratch",
                    img_size=args.img_size, steps=args.updates, batch_size=args.batch,
                    lr=2e-3, data_root=args.data_root, device="cpu", log_every=log_every,
                    eval_every=10**6, checkpoint_every=10**6, eval_limit=100,
                    train_limit=args.train_limit,
                    num_workers=args.num_workers).resolved()
    torch.manual_seed(0)
    model, _ = build_model(cfg, 10)
    optimizer = make_optimizer(model.parameters(), "adamw", 1e-3, weight_decay=0.05)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size)
    y = torch.randint(0, 10, (args.batch,))

    def forward():
        return torch.nn.functional.cross_entropy(model(x), y)

    def forward_backward():
        optimizer.zero_grad(set_to_none=True)
        forward().backward()

    def optimizer_step():
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()

    def update():
        forward_backward()
        optimizer_step()

    def seed_batch(seed_all: bool) -> None:  # what data.py does per sample, for one batch
        for i in range(args.batch):
            if seed_all:  # torch.manual_seed also seeds every accelerator backend
                torch.manual_seed(i)
            else:
                torch.default_generator.manual_seed(i)
            random.seed(i)

    reps = max(10, args.updates // 3)
    t_update = median_seconds(update, reps)  # also the warm-up of what follows
    t_fwd = median_seconds(lambda: forward().detach(), reps)
    t_fwd_bwd = median_seconds(forward_backward, reps)
    t_opt = median_seconds(optimizer_step, reps)  # on the gradients of the last backward
    t_seed = median_seconds(lambda: seed_batch(False), reps)
    t_seed_all = median_seconds(lambda: seed_batch(True), reps)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            forward().detach()
    gelu_us = sum(e.self_cpu_time_total for e in prof.key_averages() if "gelu" in e.key.lower())
    all_us = sum(e.self_cpu_time_total for e in prof.key_averages())
    # the loader alone
    from torch.utils.data import DataLoader

    from mixer_lib.data import build_split
    from mixer_lib.sampling import EpochSampler

    split = build_split(data_config(cfg), "train")  # the loop's own training split

    def data_seconds(batched: bool = True) -> float:  # its workers stop with the iterator
        if not batched:  # what DataLoader does without __getitems__: sample by sample
            split.__getitems__ = None
        try:
            loader = DataLoader(split, batch_size=args.batch,
                                sampler=EpochSampler(len(split), 0, total=10**9),
                                **loader_kwargs(torch.device("cpu"), cfg.num_workers))
            batches = iter(loader)
            return median_seconds(lambda: next(batches), reps)
        finally:
            vars(split).pop("__getitems__", None)  # the class's batched fetch again

    t_data = data_seconds()
    t_data_per_sample = data_seconds(batched=False)
    # the loop itself, in segments between model-alone measurements
    alone_windows = max(2, args.updates // (2 * args.segments * log_every))

    def alone_rate_now() -> float:  # measured as the loop's windows are
        return args.batch * statistics.median(window_rates(update, log_every, alone_windows))

    alone_rates = [alone_rate_now()]
    segment_rates, fractions = [], []
    ends = [round(args.updates * (i + 1) / args.segments) for i in range(args.segments)]
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "run" / "metrics.jsonl"
        for i, end in enumerate(ends):
            seen = sum(1 for _ in metrics.open()) if metrics.exists() else 0
            train(cfg, Path(tmp) / "run", resume=i > 0, stop_after=end, progress=False)
            rows = [json.loads(line) for line in metrics.open()][seen:]
            windows = [r["img_per_s"] for r in rows if "img_per_s" in r][1:]
            alone_rates.append(alone_rate_now())
            if windows:  # the first window of each segment holds the workers' start
                segment_rates.append(statistics.median(windows))
                fractions.append(segment_rates[-1] / max(alone_rates[-2:]))
    loop_rate = statistics.median(segment_rates)
    alone_rate = statistics.median(alone_rates)
    peak = matmul_peak_gflops()
    train_gflops = 3 * analytic_flops(model.cfg) / 1e9 * loop_rate if hasattr(model, "cfg") \
        else None
    record = {
        "benchmark": "training_loop", "variant": args.variant, "img_size": args.img_size,
        "batch": args.batch, "updates": args.updates,
        "num_workers": loader_kwargs(torch.device("cpu"), cfg.num_workers)["num_workers"],
        "loader_form": split.fetch_form(),
        "segments": args.segments, "rate_method": "window-median", "window_updates": log_every,
        "loop_img_s": loop_rate, "model_alone_img_s": alone_rate,
        "loop_img_s_per_segment": segment_rates, "model_alone_img_s_between": alone_rates,
        "loop_fraction_per_segment": fractions,
        "loop_fraction_of_model_alone": statistics.median(fractions),
        "seconds_per_update": {"data_loader_alone": t_data,
                               "data_loader_alone_sample_by_sample": t_data_per_sample,
                               "forward": t_fwd,
                               "forward_backward": t_fwd_bwd,
                               "optimizer_and_clip": t_opt,
                               "sample_seeding_cpu_generator": t_seed,
                               "sample_seeding_torch_manual_seed": t_seed_all,
                               "whole_update_model_alone": t_update},
        "gelu_share_of_forward": gelu_us / all_us if all_us else None,
        "matmul_peak_gflops_fp32": peak, "loop_train_gflops": train_gflops,
        "loop_fraction_of_matmul_peak": train_gflops / peak if train_gflops else None,
        "environment": environment("cpu"),
    }
    out = Path(args.out) / f"benchmark-loop-{device_tag(record['environment']['device'])}.json"
    write_json(out, record)
    print(f"{args.variant} {args.img_size}px batch {args.batch}, {args.updates} updates")
    print(f"  model alone  {alone_rate:8.1f} img/s  (median; between segments: "
          f"{', '.join(f'{r:.0f}' for r in alone_rates)})")
    print(f"  the loop     {loop_rate:8.1f} img/s  (median; segments: "
          f"{', '.join(f'{r:.0f}' for r in segment_rates)})")
    print(f"  the loop at {100 * record['loop_fraction_of_model_alone']:.0f}% of the model alone "
          f"(median over segments of loop / the faster model-alone beside it: "
          f"{', '.join(f'{100 * f:.0f}%' for f in fractions)})")
    for k, v in record["seconds_per_update"].items():
        print(f"  {k:38s} {1000 * v:8.1f} ms")
    if record["gelu_share_of_forward"] is not None:
        print(f"  tanh GELU: {100 * record['gelu_share_of_forward']:.0f}% of the forward")
    if train_gflops:
        print(f"  matmul peak {peak:.1f} GFLOP/s fp32; the loop trains at {train_gflops:.1f} "
              f"GFLOP/s ({100 * train_gflops / peak:.0f}% of peak)")
    print(f"record: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
