"""Throughput, memory, parameters and FLOPs of Mixer variants against peers (issue: compute).

Measures, for each model, inference and training images/s (median of repeats after warm-up,
synchronised on GPU), peak GPU memory, parameters and forward FLOPs (counted with
``torch.utils.flop_counter``; for Mixer also checked against the closed form) and, eager, the
seconds of a training step's matrix products replayed alone (``mixer_lib.matmuls``: what the
step would take if nothing else in it took time), for each dtype
(fp32, bf16 autocast; ``bf16w``: inference with bf16 weights, no autocast) and mode (eager,
torch.compile). Peers in the same run: timm's
``mixer_b16_224``, ``vit_base_patch16_224`` and ``resnet50`` (random weights). On a GPU it
also measures the bf16 matmul peak and reports achieved TFLOP/s and MFU.

    python benchmarks/throughput.py --preset cpu-small     # a few minutes on a laptop CPU
    python benchmarks/throughput.py --preset gpu            # the full table on a GPU

Prints a table and writes a JSON record (environment, device, commit, the plan of
configurations) to ``results/``, rewritten after each configuration. A configuration that
raises (out of memory, a kernel this machine's compiler rejects) is listed under ``failed`` in
the record with its error, the others still run, and the exit status is 1. ``--resume``
continues a record of the same preset, device, commit and plan that a time limit cut,
measuring only the configurations it lacks (``scripts/perf-on-gpu.sh`` does, with the time
its stages leave).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import MISSING, asdict, dataclass, fields
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mixer_lib import VARIANTS, MixerConfig, create_model  # noqa: E402
from mixer_lib.flops import analytic_flops  # noqa: E402
from mixer_lib.matmuls import record_matmuls, replay_groups, replay_seconds  # noqa: E402
from mixer_lib.model import MODEL_FORM  # noqa: E402
from mixer_lib.provenance import (  # noqa: E402
    device_name,
    device_tag,
    environment,
    git_commit,
    write_json,
)
from mixer_lib.records import timm_peer  # noqa: E402
from mixer_lib.rundir import set_aside_record  # noqa: E402
from mixer_lib.throughputs import BF16_DTYPES, bf16_peak  # noqa: E402
from mixer_lib.timing import attempt, exit_if_failed  # noqa: E402

PEERS = ("timm:mixer_b16_224", "timm:vit_base_patch16_224", "timm:resnet50")
PRESETS = {
    "cpu-small": dict(models=["Mixer-S/32", "Mixer-B/16", "Mixer-B/16@gelu=exact", *PEERS],
                      batch=8, img_size=224,
                      dtypes=["fp32"], modes=["eager", "compile"], repeats=7, warmup=3,
                      compile_models=["Mixer-B/16", "Mixer-B/16@gelu=exact",
                                      "timm:mixer_b16_224"]),
    "gpu": dict(models=[*VARIANTS, "Mixer-L/16@grad_checkpointing=true", *PEERS], batch=256,
                img_size=224, dtypes=["fp32", "bf16"], modes=["eager", "compile"], repeats=20,
                warmup=5, compile_models=None),
    # E5 of the study (paper claims on throughput): inference only, every Table 1 variant and
    # ViT at the same sizes, Mixer-B/16 at three resolutions, and with App. C's widened token
    # mixing (D_S x K^2) at 448 px. Written to results/study/.
    "claims": dict(models=["Mixer-S/32", "Mixer-S/16", "Mixer-B/32", "Mixer-B/16",
                           "Mixer-L/32", "Mixer-L/16", "Mixer-H/14",
                           "timm:vit_base_patch16_224", "timm:vit_large_patch16_224",
                           "Mixer-B/16@img_size=320", "Mixer-B/16@img_size=448",
                           "Mixer-B/16@img_size=448,tokens_mlp_dim=1536"],
                   batch=4, img_size=224, dtypes=["fp32"], modes=["eager"], repeats=5,
                   warmup=2, compile_models=[], inference_only=True, out="results/study"),
    # E5 on a GPU: the same models at a batch that fills the device, bf16 as on the paper's
    # TPUs (and fp32), so the ratios compare with Table 3's TPU-v3 column.
    "claims-gpu": dict(models=["Mixer-S/32", "Mixer-S/16", "Mixer-B/32", "Mixer-B/16",
                               "Mixer-L/32", "Mixer-L/16", "Mixer-H/14",
                               "timm:vit_base_patch16_224", "timm:vit_large_patch16_224",
                               "Mixer-B/16@img_size=320", "Mixer-B/16@img_size=448",
                               "Mixer-B/16@img_size=448,tokens_mlp_dim=1536"],
                       batch=128, img_size=224, dtypes=["bf16", "fp32"], modes=["eager"],
                       repeats=10, warmup=3, compile_models=[], inference_only=True,
                       out="results/study"),
    # E5 on a GPU, compiled: are the eager bf16 ratios set by unfused element-wise work?
    "claims-gpu-compile": dict(models=["Mixer-B/16", "timm:vit_base_patch16_224"], batch=128,
                               img_size=224, dtypes=["bf16"], modes=["eager", "compile"],
                               repeats=10, warmup=3, compile_models=None, inference_only=True,
                               out="results/study"),
    "tiny": dict(models=["Mixer-S/32", "timm:mixer_s32_224"], batch=2, img_size=224,
                 dtypes=["fp32"], modes=["eager"], repeats=2, warmup=1, compile_models=[]),
    # Our Mixer against its earlier form, timm's Mixer and timm's ViT (fused attention):
    # inference and a training step of the fine-tuning recipe (forward, backward, clipping,
    # momentum SGD), eager and compiled, bf16 and float32, batch 128 and 512 (training at
    # 512 in micro-batches of 128), and inference with bf16 weights (eager and compiled).
    # Each batch eager first (every model, bf16, bf16 weights, then float32), its compiled
    # runs last (about ten times an eager one's cost). scripts/perf-on-gpu.sh runs it, and
    # resumes it (--resume) with the time its other stages leave.
    "perf-gpu": dict(models=["Mixer-B/16", "legacy:Mixer-B/16", "timm:mixer_b16_224",
                             "timm:vit_base_patch16_224"], batch=128, batches=[128, 512],
                     train_micro=128, img_size=224, dtypes=["bf16", "bf16w", "fp32"],
                     modes=["eager", "compile"], repeats=8, warmup=3,
                     compile_models=["Mixer-B/16", "timm:vit_base_patch16_224"],
                     compile_dtypes=["bf16", "bf16w"], out="results/perf"),
    # Where the time of the bf16 products goes (issue 17's inference target): the three
    # models eager, each distinct product of an inference call and a training step replayed
    # alone, with aligned rows too (mixer_lib.matmuls.replay_groups); ours without the fused
    # token-mixing kernel, whose work is no library product. scripts/perf-on-gpu.sh runs it
    # after perf-gpu.
    "perf-gpu-products": dict(models=["Mixer-B/16@fused_token_mixing=false",
                                      "timm:mixer_b16_224",
                                      "timm:vit_base_patch16_224"], batch=128,
                              train_micro=128, img_size=224, dtypes=["bf16", "bf16w"],
                              modes=["eager"], repeats=8, warmup=3, compile_models=[],
                              out="results/perf"),
    # The fused inference paths in the whole model, each against the model without it:
    # the token-mixing kernel (mixer_lib.token_kernel) off, each of its two forms named
    # ("tma", Hopper's tensor-memory copies and the default since gemm-stem-tma, against
    # "pointers"), and the channel MLP's dense layer without its GELU epilogue
    # (mixer_lib.dense_gelu, which applies without autocast only); inference only (none has a
    # backward: training is the same with and without them), eager, bf16 autocast and bf16
    # weights, batch 128, with ViT-B/16 in the same run. A preset of its own: a fault in the
    # newer kernel form loses only this record. scripts/perf-on-gpu.sh runs it before
    # perf-gpu.
    "perf-gpu-forms": dict(models=["Mixer-B/16", "Mixer-B/16@fused_token_mixing=false",
                                   "Mixer-B/16@token_kernel_form=pointers",
                                   "Mixer-B/16@token_kernel_form=tma",
                                   "Mixer-B/16@fused_dense_gelu=false",
                                   "timm:vit_base_patch16_224"], batch=128,
                           img_size=224, dtypes=["bf16", "bf16w"], modes=["eager"],
                           repeats=8, warmup=3, compile_models=[], inference_only=True,
                           out="results/perf"),
    # the same comparison on a CPU, float32, at a batch a CPU trains in seconds
    "perf-cpu": dict(models=["Mixer-B/16", "legacy:Mixer-B/16", "timm:mixer_b16_224",
                             "timm:vit_base_patch16_224"], batch=8, img_size=224,
                     dtypes=["fp32"], modes=["eager", "compile"], repeats=5, warmup=2,
                     rounds=3, compile_models=["Mixer-B/16"], out="results/perf"),
}


@dataclass
class Row:
    model: str
    dtype: str
    mode: str
    batch: int
    params_m: float
    gflops_fwd: float
    infer_img_s: float
    train_img_s: float | None
    peak_mem_gib: float | None
    train_tflops: float | None = None
    mfu: float | None = None
    img_size: int | None = None
    infer_tflops: float | None = None
    infer_mfu: float | None = None
    rounds: int = 1
    # the first call of each, compilation included in compile mode (the compiler's caches in
    # a folder empty when the process starts; the largest over rounds, since later rounds
    # find the first round's compiled code there)
    first_infer_s: float | None = None
    first_train_s: float | None = None
    # eager: seconds of one training step's matrix products replayed alone (mixer_lib.matmuls)
    train_matmul_s: float | None = None
    # eager, in the performance presets: the same for one inference call
    infer_matmul_s: float | None = None
    # eager, in the performance presets: each distinct product of one inference call and of
    # one training step replayed alone, with rows aligned too (mixer_lib.matmuls.replay_groups)
    infer_matmul_groups: list | None = None
    train_matmul_groups: list | None = None


def parse_spec(name: str) -> tuple[str, dict[str, object]]:
    """``"Mixer-B/16@gelu=exact,grad_checkpointing=true"`` ->
    ``("Mixer-B/16", {"gelu": "exact", "grad_checkpointing": True})``."""
    base, _, opts = name.partition("@")
    defaults = {f.name: f.default for f in fields(MixerConfig)}
    overrides: dict[str, object] = {}
    for item in filter(None, opts.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in defaults:
            raise ValueError(f"bad model option {item!r} in {name!r}; write key=value with "
                             f"a MixerConfig field ({', '.join(defaults)})")
        default = defaults[key]
        kind = int if default is MISSING else type(default)  # fields without one are sizes
        overrides[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return base, overrides


def legacy(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` computing as the library did up to commit c090817, for the "no slower than
    before" comparison: the tokens left as a strided (B, C, S) view of the stem's output (every
    LayerNorm read transposed memory) and token mixing on its weight expanded per sample (cast
    per sample under autocast). Same weights, same function."""
    from einops import rearrange

    def forward_features(x):
        # the stem as the convolution it then was; its output's tokens a view with strides
        # (C*S, 1, C)
        x = rearrange(torch.nn.Conv2d.forward(model.stem, x), "b c h w -> b (h w) c")
        for block in model.blocks:
            x = block(x)
        return model.norm(x)

    def token_mixing(mlp, x):
        b = x.shape[0]
        h = torch.baddbmm(mlp.fc1.bias[None, :, None], mlp.fc1.weight.expand(b, -1, -1), x)
        h = mlp.act(h)
        return torch.baddbmm(mlp.fc2.bias[None, :, None], mlp.fc2.weight.expand(b, -1, -1), h)

    model.forward_features = forward_features
    for block in model.blocks:
        block.mlp_tokens.forward = token_mixing.__get__(block.mlp_tokens)
    return model


def build(name: str, img_size: int) -> torch.nn.Module:
    """A model with random weights: ``timm:<name>`` for a timm peer, ``legacy:<variant>`` for
    our earlier form (:func:`legacy`), else a Mixer variant with optional ``@key=value,...``
    config overrides (e.g. ``Mixer-B/16@gelu=exact``)."""
    if name.startswith("legacy:"):  # its token mixing by hand: never the fused kernel
        base = name[7:]
        sep = "," if "@" in base else "@"
        return legacy(build(f"{base}{sep}fused_token_mixing=false,fused_dense_gelu=false",
                            img_size))
    if name.startswith("timm:"):
        import timm

        return timm.create_model(name[5:], num_classes=1000, img_size=img_size) \
            if "resnet" not in name else timm.create_model(name[5:], num_classes=1000)
    base, overrides = parse_spec(name)
    img_size = int(overrides.pop("img_size", img_size))
    return create_model(base, num_classes=1000, img_size=img_size, **overrides)


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def first_call_seconds(fn, device) -> float:
    """Seconds of one call of ``fn`` (the first: with compilation in compile mode)."""
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def timed(fn, device, warmup: int, repeats: int, batch: int) -> float:
    """Median images/s of ``fn`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def matmul_peak_tflops(device: torch.device, n: int = 8192, repeats: int = 20,
                      dtype: torch.dtype = torch.bfloat16) -> float:
    """Measured dense matmul throughput (TFLOP/s) of the device in ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    rate = timed(lambda: a @ b, device, 5, repeats, 1)
    return 2 * n**3 * rate / 1e12


def one_bf16_peak(peak: float | None, peaks: dict[str, float]
                  ) -> tuple[float | None, dict[str, float]]:
    """The bf16 peak and the peaks by dtype with every bf16 one (``bf16``, ``bf16w``: the
    same product, measured more than once) replaced by the highest bf16 measurement
    (:func:`~mixer_lib.throughputs.bf16_peak`): on the H200 three measurements of one run
    gave 700 to 761 TFLOP/s, and a share of the peak taken against the lowest would flatter
    the model by the spread."""
    best = bf16_peak({"matmul_peak_tflops": peak, "matmul_peak_tflops_by_dtype": peaks})
    if best is None:
        return peak, peaks
    return best, {d: best if d in BF16_DTYPES else v for d, v in peaks.items()}


def matmul_seconds(device: torch.device, seconds: float, n: int = 1024) -> None:
    """Run fp32 matmuls for about ``seconds`` (device warm-up)."""
    a = torch.randn(n, n, device=device)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a @ a


def measure(name: str, dtype: str, mode: str, args, device, peak: float | None) -> Row:
    torch.manual_seed(0)
    model = build(name, args.img_size).to(device)
    size = getattr(model, "cfg", None).img_size if hasattr(model, "cfg") else args.img_size
    x = torch.randn(args.batch, 3, size, size, device=device)
    y = torch.randint(0, 1000, (args.batch,), device=device)
    params = sum(p.numel() for p in model.parameters())
    flops = forward_flops(model.eval(), x[:1])
    if not name.startswith(("timm:", "legacy:")):
        analytic = analytic_flops(model.cfg)
        if abs(flops - analytic) > 0.01 * analytic:
            raise AssertionError(f"{name}: flop_counter {flops} != closed form {analytic}")
    if dtype == "bf16w":  # inference with the weights themselves in bf16, no autocast
        model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)
    if mode == "compile":
        torch._dynamo.reset()  # compile as a fresh process would, not from this one's cache
    fwd = torch.compile(model) if mode == "compile" else model
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def infer():
        with torch.no_grad(), torch.autocast(**amp):
            fwd(x)

    micro = getattr(args, "train_micro", None) or args.batch
    chunks = max(1, args.batch // micro)

    def step():  # the fine-tuning recipe's update: clipping at norm 1, momentum SGD
        for xs, ys in zip(x.chunk(chunks), y.chunk(chunks), strict=True):
            with torch.autocast(**amp):
                loss = torch.nn.functional.cross_entropy(fwd(xs).float(), ys)
            (loss / chunks).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.eval()
    first_infer = first_call_seconds(infer, device)
    infer_rate = timed(infer, device, args.warmup, args.repeats, args.batch)
    infer_tflops = flops * infer_rate / 1e12
    infer_mfu = infer_tflops / peak if peak else None
    products = mode == "eager" and not getattr(args, "inference_only", False)
    infer_matmul, infer_groups = matmul_seconds_of(infer, name) if products else (None, None)
    if getattr(args, "inference_only", False) or dtype == "bf16w":
        return Row(name, dtype, mode, args.batch, params / 1e6, flops / 1e9, infer_rate,
                   None, None, None, None, size, infer_tflops, infer_mfu,
                   first_infer_s=first_infer, infer_matmul_s=infer_matmul,
                   infer_matmul_groups=infer_groups)
    model.train()
    first_train = first_call_seconds(step, device)
    train_rate = timed(step, device, args.warmup, args.repeats, args.batch)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    train_tflops = 3 * flops * train_rate / 1e12  # forward + backward = 3x forward FLOPs
    train_matmul, train_groups = matmul_seconds_of(step, name) if products else (None, None)
    return Row(name, dtype, mode, args.batch, params / 1e6, flops / 1e9, infer_rate,
               train_rate, mem, train_tflops, train_tflops / peak if peak else None, size,
               infer_tflops, infer_mfu, first_infer_s=first_infer, first_train_s=first_train,
               train_matmul_s=train_matmul, infer_matmul_s=infer_matmul,
               infer_matmul_groups=infer_groups, train_matmul_groups=train_groups)


def matmul_seconds_of(fn, name: str) -> tuple[float | None, list | None]:
    """Seconds of the matrix products of one call of ``fn`` replayed alone, and each distinct
    product replayed alone (:mod:`mixer_lib.matmuls`); None, said on stderr, where an op's
    replay fails (a kernel this machine's tests could not run), so the measurement goes on."""
    try:
        calls = record_matmuls(fn)
        return replay_seconds(calls, repeats=3, warmup=1), replay_groups(calls)
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as err:
        print(f"{name}: the matrix products' replay failed ({err}); none recorded",
              file=sys.stderr)
        return None, None


def print_table(rows: list[Row], peak: float | None) -> None:
    head = (f"{'model':26s} {'dtype':5s} {'mode':7s} {'params M':>8s} {'GFLOPs':>7s} "
            f"{'infer img/s':>11s} {'train img/s':>11s} {'mem GiB':>7s} {'TFLOP/s':>7s} "
            f"{'MFU':>5s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        mem = f"{r.peak_mem_gib:.1f}" if r.peak_mem_gib is not None else "n/a"
        mfu = f"{100 * r.mfu:.0f}%" if r.mfu is not None else "n/a"
        train = f"{r.train_img_s:11.1f}" if r.train_img_s is not None else f"{'n/a':>11s}"
        tflops = f"{r.train_tflops:7.3f}" if r.train_tflops is not None else f"{'n/a':>7s}"
        print(f"{r.model:26s} {r.dtype:5s} {r.mode:7s} {r.params_m:8.1f} {r.gflops_fwd:7.1f} "
              f"{r.infer_img_s:11.1f} {train} {mem:>7s} {tflops} {mfu:>5s}")
    if peak:
        print(f"measured bf16 matmul peak: {peak:.0f} TFLOP/s")
    print()
    records = [asdict(r) for r in rows]
    for r in records:  # ratios against timm's Mixer-B/16 in the same dtype and mode
        peer = timm_peer(r, records)
        if peer and r["train_img_s"] is not None:
            print(f"{r['model']} (ours) / timm mixer_b16_224 [{r['dtype']}, {r['mode']}]: "
                  f"inference {r['infer_img_s'] / peer['infer_img_s']:.2f}x, training "
                  f"{r['train_img_s'] / peer['train_img_s']:.2f}x")


def median_row(rows: list[Row]) -> Row:
    """One row from the rounds of one configuration: median rates (and the TFLOP/s and MFU
    that go with them), largest peak memory and first-call times."""
    def med(key: str) -> float | None:
        values = [getattr(r, key) for r in rows if getattr(r, key) is not None]
        return statistics.median(values) if values else None

    out = Row(**{**asdict(rows[0]), **{k: med(k) for k in (
        "infer_img_s", "train_img_s", "train_tflops", "mfu", "infer_tflops", "infer_mfu",
        "train_matmul_s", "infer_matmul_s")}})
    for key in ("peak_mem_gib", "first_infer_s", "first_train_s"):  # the largest
        values = [getattr(r, key) for r in rows if getattr(r, key) is not None]
        setattr(out, key, max(values) if values else None)
    out.rounds = len(rows)
    return out


def perf_ratios(rows: list[dict]) -> list[dict]:
    """Ours against each peer measured with the same dtype, batch and mode (the peer eager
    when it was not compiled): inference and training ratios."""
    out = []
    for r in rows:
        if r["model"] != "Mixer-B/16":
            continue
        for peer_name in ("legacy:Mixer-B/16", "timm:mixer_b16_224", "timm:vit_base_patch16_224"):
            same = [p for p in rows if p["model"] == peer_name and p["dtype"] == r["dtype"]
                    and p["batch"] == r["batch"]]
            peer = next((p for p in same if p["mode"] == r["mode"]), None) or \
                next((p for p in same if p["mode"] == "eager"), None)
            if peer is None:
                continue
            out.append({"dtype": r["dtype"], "batch": r["batch"], "mode": r["mode"],
                        "peer": peer_name, "peer_mode": peer["mode"],
                        "inference": r["infer_img_s"] / peer["infer_img_s"],
                        "training": (r["train_img_s"] / peer["train_img_s"]
                                     if r["train_img_s"] and peer["train_img_s"] else None)})
    return out


def write_record(path: Path, args, device, peak, peaks, by_config, done: int,
                 total: int, failures: list[dict], configs: list[tuple],
                 resumed: list[dict]) -> None:
    """The record of the configurations measured so far (``complete`` once all of them
    are: ``done`` of ``total`` measurements), of those that failed (``failed``: what, the
    error and the configuration), the plan (``configurations``: model, dtype, mode, batch)
    and, where ``--resume`` continued it, when (``resumed``)."""
    rows = [asdict(median_row(measured)) for measured in by_config.values()]
    if resumed:
        resumed[-1]["measured_after"] = f"{done} of {total}"
    write_json(path, {"preset": args.preset, "img_size": args.img_size,
                      "model_form": MODEL_FORM, "complete": done == total,
                      "measured": f"{done} of {total}", "failed": failures,
                      "matmul_peak_tflops": peak, "matmul_peak_tflops_by_dtype": peaks,
                      "train_micro_batch": getattr(args, "train_micro", None),
                      "environment": environment(device), "rows": rows,
                      "ratios": perf_ratios(rows),
                      "configurations": [list(c) for c in configs],
                      **({"resumed": resumed} if resumed else {})})


def plan(args: argparse.Namespace) -> list[tuple[str, str, str, int]]:
    """The configurations to measure, (model, dtype, mode, batch), in order: every model at
    one batch, mode and dtype before the next (the first batch, mode and dtype first; eager
    before compile), so that a run cut short by its time limit keeps whole comparisons, and
    the costly compiled runs of a batch come last; compiled only the ``compile_models`` (all
    where None) in the ``compile_dtypes`` (all where absent)."""
    return [(name, dtype, mode, batch)
            for batch in getattr(args, "batches", None) or [args.batch]
            for mode in args.modes for dtype in args.dtypes for name in args.models
            if not (mode == "compile" and args.compile_models is not None
                    and name not in args.compile_models)
            and not (mode == "compile" and dtype not in getattr(args, "compile_dtypes",
                                                                [dtype]))]


def _key(row: dict) -> tuple:
    """A record row's configuration: model, dtype, mode, batch."""
    return row["model"], row["dtype"], row["mode"], row["batch"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def resumable(path: Path, preset: str, device: torch.device, configs: list[tuple],
              rounds: int) -> dict | None:
    """The record at ``path`` that ``--resume`` continues: of ``preset``, made on this device
    by this commit (a known one, not a modified tree), with the same plan (``configs``) and
    one round; else None, with the reason on stderr (the caller then sets it aside and
    starts anew). A complete one comes back too: nothing is left to measure."""
    if not path.exists():
        print(f"nothing to resume: no record at {path}; measuring anew", file=sys.stderr,
              flush=True)
        return None
    try:
        record = json.loads(path.read_text())
        env = record["environment"]
    except (ValueError, KeyError, TypeError):
        record, env = None, {}
    commit = git_commit()
    why = ("it is unreadable" if record is None
           else f"it is of preset {record.get('preset')!r}" if record.get("preset") != preset
           else f"it was made on {env.get('device')}" if env.get("device") != device_name(device)
           else "this tree's commit is unknown or modified"
           if commit is None or commit.endswith("-dirty")
           else f"it was made by commit {env.get('git_commit')}, this is {commit}"
           if env.get("git_commit") != commit
           else "its plan of configurations differs"
           if [tuple(c) for c in record.get("configurations", [])] != configs
           else "resuming needs one round" if rounds != 1 else None)
    if why:
        print(f"not resuming {path.name}: {why}", file=sys.stderr, flush=True)
        return None
    return record


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    parser.add_argument("--models", nargs="*", help="override the preset's models")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--modes", nargs="*", help="override the preset's modes")
    parser.add_argument("--dtypes", nargs="*", help="override the preset's dtypes")
    parser.add_argument("--rounds", type=int, help="override the preset's rounds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None,
                        help="folder for the JSON record (default results/, or the preset's; "
                             "'' = do not write)")
    parser.add_argument("--resume", action="store_true",
                        help="continue this preset's record of this device and commit where a "
                             "time limit cut it: measure only the configurations it lacks "
                             "(else, as without it, set the record aside and start anew)")
    args = parser.parse_args(argv)
    preset = dict(PRESETS[args.preset])
    for key in ("models", "batch", "repeats", "modes", "dtypes", "rounds"):
        if getattr(args, key):
            preset[key] = getattr(args, key)
    if args.batch:
        preset.pop("batches", None)
    if args.out is None:
        args.out = str(REPO / preset.pop("out", "results"))
    preset.pop("out", None)
    for key, value in preset.items():
        setattr(args, key, value)
    device = torch.device(args.device)
    if "compile" in args.modes:  # compile times of a machine that has not compiled these yet
        cold = tempfile.mkdtemp(prefix="compile-cache-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.environ["TRITON_CACHE_DIR"] = cold
        atexit.register(shutil.rmtree, cold, True)
    configs = plan(args)
    rounds = getattr(args, "rounds", None) or 1
    path = None
    if args.out:
        path = Path(args.out) / f"benchmark-{args.preset}-{device_tag(device_name(device))}.json"
    earlier = resumable(path, args.preset, device, configs, rounds) \
        if path and args.resume else None
    if path and earlier is None:
        set_aside_record(path)
    # rounds: the whole sweep again, models interleaved, the median per configuration (a
    # noisy machine's drift then spreads over every model instead of favouring one)
    by_config: dict[tuple, list[Row]] = {}
    failures: list[dict] = []  # configurations that raised: recorded, and the rest go on
    resumed: list[dict] = []
    if earlier is not None:  # the same plan: its peaks, rows and failures stand
        peak, peaks = earlier["matmul_peak_tflops"], earlier["matmul_peak_tflops_by_dtype"]
        by_config = {_key(row): [Row(**row)] for row in earlier["rows"]}
        failures = earlier.get("failed") or []
        resumed = [*earlier.get("resumed", []), {"date": _now(),
                                                 "measured_before": earlier["measured"]}]
        print(f"resuming {path.name}: {earlier['measured']} measured, "
              f"{len(failures)} failed", file=sys.stderr, flush=True)
        matmul_seconds(device, seconds=2.0)  # warm-up only: the record's peaks stand
    else:
        # Warm the device up (clocks, thread pool, allocator) so the first model measured is
        # not penalised; on GPU this also measures the bf16 matmul peak used for MFU.
        peak = matmul_peak_tflops(device) if device.type == "cuda" else None
        if device.type == "cpu":
            matmul_seconds(device, seconds=3.0)
        peaks: dict[str, float] = {}  # per dtype, for the perf presets' MFU
        if args.preset.startswith("perf"):
            peaks = {d: matmul_peak_tflops(device, 8192 if device.type == "cuda" else 1024,
                                           10, torch.bfloat16 if d.startswith("bf16")
                                           else torch.float32)
                     for d in args.dtypes}
            peak, peaks = one_bf16_peak(peak, peaks)
    # what the record already holds, measured or failed, is not measured again
    settled = set(by_config) | {tuple(f["config"]) for f in failures if "config" in f}
    total = len(configs) * rounds
    for round_ in range(rounds):
        for name, dtype, mode, batch in configs:
            if (name, dtype, mode, batch) in settled:
                continue
            args.batch = batch
            what = f"round {round_ + 1}: {name} {dtype} {mode} batch {batch}"
            print(f"... {what}", file=sys.stderr, flush=True)
            row = attempt(what, partial(measure, name, dtype, mode, args, device,
                                        peaks.get(dtype) or peak), failures)
            if row is None:
                failures[-1]["config"] = [name, dtype, mode, batch]
            else:
                by_config.setdefault((name, dtype, mode, batch), []).append(row)
            if path:  # after each configuration, so a run cut short keeps what it measured
                done = sum(map(len, by_config.values()))
                write_record(path, args, device, peak, peaks, by_config, done, total,
                             failures, configs, resumed)
    rows = [median_row(measured) for measured in by_config.values()]
    print_table(rows, peak)
    for q in perf_ratios([asdict(r) for r in rows]):
        train = f"{q['training']:.2f}x" if q["training"] else "n/a"
        print(f"Mixer-B/16 {q['mode']} / {q['peer']} {q['peer_mode']} [{q['dtype']}, batch "
              f"{q['batch']}]: inference {q['inference']:.2f}x, training {train}")
    if path:
        print(f"record: {path}")
    exit_if_failed(failures, f"of {total} measurements")
    return rows


if __name__ == "__main__":
    main()
