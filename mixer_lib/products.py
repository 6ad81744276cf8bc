"""Where the matrix products' time goes on a GPU (issue 17's inference target), read from
two kinds of records for the Claims chapter:

* ``results/perf/benchmark-perf-gpu-products-*.json`` (``benchmarks/throughput.py --preset
  perf-gpu-products``): each distinct product of one inference call replayed alone
  (:func:`mixer_lib.matmuls.replay_groups`), for our Mixer-B/16, timm's and ViT-B/16;
* ``results/perf/benchmark-token-mixing-*.json`` (``benchmarks/token_mixing.py``): the
  token-mixing MLP written in several ways, alone and inside the whole model.

The fused kernel's own records: :mod:`mixer_lib.kernelbench`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mixer_lib.provenance import latest_record
from mixer_lib.throughputs import PEERS, of_current_form, peak_share, short_device

REPO = Path(__file__).resolve().parents[1]
PERF = REPO / "results" / "perf"
MM_OPS = ("mm", "addmm", "bmm", "baddbmm")
OURS, VIT = "Mixer-B/16", "timm:vit_base_patch16_224"
# ours without the fused token-mixing kernel: the products preset measures it (since the
# kernel, whose work is no library product), earlier records measured OURS before it existed
UNFUSED = "Mixer-B/16@fused_token_mixing=false"
#: How the book names the benchmark's bf16 dtypes.
DTYPE_WORDS = {"bf16": "bf16 autocast", "bf16w": "bf16 weights"}


def _latest(folder: str | Path, pattern: str, preset: str | None = None,
            keep: Callable[[dict], bool] | None = None) -> dict | None:
    """The newest record matching ``pattern`` in ``folder`` (of ``preset`` when given, and
    one ``keep`` accepts when given)."""
    return latest_record(folder, pattern, lambda r: (preset is None or r.get("preset") == preset)
                         and (keep is None or keep(r)))


def _title(record: dict) -> str:
    env = record["environment"]
    return (f"{short_device(record)}, {str(env.get('date'))[:10]}, commit "
            f"{str(env.get('git_commit'))[:7]}")


PATCH = 3 * 16 * 16  # a flattened 16 px RGB patch, the width of our stem's product


def part(group: dict, tokens: int) -> str:
    """Which part of a model a replayed product belongs to: the stem (a strided convolution,
    or our product of the ``(B·S, 3·16·16)`` patches with the kernel, whose only sizes are
    those two and C = 768 = 3·16·16 for B/16), attention, token mixing (a Mixer product with
    the token count as one of its sizes), the head (1000 classes), or the dense layers
    (channel MLPs, ViT's projections and MLPs)."""
    sizes = {n for shape in group["shapes"] for n in shape}
    if group["op"].startswith("convolution"):
        return "stem (convolution)"
    rows = sizes - {PATCH}
    if len(rows) == 1 and next(iter(rows)) % tokens == 0 and PATCH in sizes:
        return "stem (product)"
    if "attention" in group["op"]:
        return "attention (fused kernel)"
    if tokens in sizes:
        return "token mixing"
    if 1000 in sizes:
        return "head"
    return "dense layers"


def stem_convolution_flops(group: dict) -> float:
    """FLOPs of one call of a stem's convolution (kernel = stride, the only convolution the
    records hold): ``2·B·H·W·C_out·C_in`` from its input ``(B, C_in, H, W)`` and kernel
    ``(C_out, C_in, P, P)`` shapes."""
    (b, c_in, h, w), (c_out, *_) = group["shapes"][:2]
    return 2.0 * b * h * w * c_out * c_in


def _parts(row: dict, tokens: int) -> dict[str, dict[str, float]]:
    """Per part of one model's inference call: seconds (all its calls), FLOPs (mm family
    and the stem's convolution)."""
    out: dict[str, dict[str, float]] = {}
    for g in row.get("infer_matmul_groups") or []:
        p = out.setdefault(part(g, tokens), {"seconds": 0.0, "flops": 0.0})
        p["seconds"] += g["seconds"] * g["calls"]
        if g.get("tflops"):
            p["flops"] += g["tflops"] * 1e12 * g["seconds"] * g["calls"]
        elif g["op"] == "convolution":
            p["flops"] += stem_convolution_flops(g) * g["calls"]
    return out


def _rows(record: dict, dtype: str) -> dict[str, dict]:
    return {r["model"]: r for r in record["rows"] if r["dtype"] == dtype
            and r.get("infer_matmul_groups")}


def products_table(folder: str | Path = PERF, dtype: str = "bf16"
                   ) -> tuple[list[str], list[list[str]]]:
    """One row per model and part of an inference call (the latest products record,
    ``dtype``): the part's products replayed one at a time (each call synchronised, which
    adds some microseconds to each), milliseconds for the whole call, their share of the
    parts' time and of their FLOPs, and their TFLOP/s; then each model's products replayed
    in sequence (``infer_matmul_s``) against its inference call."""
    record = _latest(folder, "benchmark-perf-gpu-products-*.json")
    headers = ["model", "part", "products alone (ms)", "share of the products' time",
               "share of their FLOPs", "TFLOP/s"]
    if record is None:
        return headers, []
    tokens = (record["img_size"] // 16) ** 2
    out = []
    for name, row in _rows(record, dtype).items():
        parts = _parts(row, tokens)
        seconds = sum(p["seconds"] for p in parts.values())
        flops = sum(p["flops"] for p in parts.values())
        for what, p in sorted(parts.items(), key=lambda kv: -kv[1]["seconds"]):
            out.append([PEERS.get(name, name), what, f"{1e3 * p['seconds']:.2f}",
                        f"{100 * p['seconds'] / seconds:.0f} %",
                        f"{100 * p['flops'] / flops:.0f} %" if p["flops"] else "-",
                        f"{p['flops'] / p['seconds'] / 1e12:.0f}" if p["flops"] else "-"])
        call, together = row["batch"] / row["infer_img_s"], row["infer_matmul_s"]
        out.append([PEERS.get(name, name), "all products in sequence / the inference call",
                    f"{1e3 * together:.2f} / {1e3 * call:.2f}",
                    f"{100 * together / call:.0f} % of the call", "100 %",
                    f"{flops / together / 1e12:.0f}"])
    return headers, out


def products_summary(folder: str | Path = PERF, dtype: str = "bf16") -> dict[str, str]:
    """The figures the Claims chapter quotes from the latest products record: where
    (``pr_where``), our and ViT-B/16's products of one inference call replayed in sequence
    (``pr_ours_ms``, ``pr_vit_ms``) and ViT's over ours (``pr_ratio``, the most our inference
    could gain on ViT's if both ran nothing but their products), our token-mixing products'
    share of our
    products' time (replayed one at a time) and of their FLOPs (``pr_token_time``,
    ``pr_token_flops``), their and the
    dense layers' TFLOP/s (``pr_token_tflops``, ``pr_dense_tflops``), the products alone as a
    share of the matmul peak measured in the same run (``pr_products_mfu``), and the
    token-mixing products with aligned rows (``pr_aligned``), and our stem: milliseconds,
    TFLOP/s and share of the products' time (``pr_stem``), and the milliseconds its FLOPs
    would take at the dense layers' rate (``pr_stem_at_dense``, an estimate). "not measured"
    without one."""
    keys = ("pr_where", "pr_ours_ms", "pr_vit_ms", "pr_ratio", "pr_token_time",
            "pr_token_flops", "pr_token_tflops", "pr_dense_tflops", "pr_products_mfu",
            "pr_aligned", "pr_stem", "pr_stem_at_dense")
    record = _latest(folder, "benchmark-perf-gpu-products-*.json")
    rows = _rows(record, dtype) if record else {}
    row = next((rows[name] for name in (UNFUSED, OURS) if name in rows), None)
    if row is None or VIT not in rows:
        return dict.fromkeys(keys, "not measured")
    tokens = (record["img_size"] // 16) ** 2
    ours = _parts(row, tokens)
    parts_s = sum(p["seconds"] for p in ours.values())
    ours_s, vit_s = row["infer_matmul_s"], rows[VIT]["infer_matmul_s"]
    ours_flops = sum(p["flops"] for p in ours.values())
    token, dense = ours["token mixing"], ours["dense layers"]
    stem = next((ours[k] for k in ours if k.startswith("stem") and ours[k]["flops"]), None)
    stem_texts = ("not measured",) * 2 if stem is None else (
        f"{1e3 * stem['seconds']:.2f} ms at {stem['flops'] / stem['seconds'] / 1e12:.0f} "
        f"TFLOP/s, {100 * stem['seconds'] / parts_s:.0f} % of the products' time",
        f"{1e3 * stem['flops'] * dense['seconds'] / dense['flops']:.2f} ms")
    groups = [g for g in row["infer_matmul_groups"] if part(g, tokens) == "token mixing"]
    peak = (record.get("matmul_peak_tflops_by_dtype") or {}).get(dtype) \
        or record.get("matmul_peak_tflops")
    products_tflops = row["gflops_fwd"] * row["batch"] / 1e3 / ours_s
    aligned = [f"{1e3 * g['seconds']:.3f} ms aligned {1e3 * g['aligned_seconds']:.3f} ms"
               for g in groups if "aligned_seconds" in g]
    return dict(zip(keys, (
        _title(record), f"{1e3 * ours_s:.2f} ms", f"{1e3 * vit_s:.2f} ms",
        f"{vit_s / ours_s:.2f}x", f"{100 * token['seconds'] / parts_s:.0f} %",
        f"{100 * token['flops'] / ours_flops:.0f} %",
        " and ".join(f"{g['tflops']:.0f}" for g in groups if g.get("tflops")),
        f"{dense['flops'] / dense['seconds'] / 1e12:.0f}",
        f"{100 * products_tflops / peak:.0f} %" if peak else "not measured",
        "; ".join(aligned) or "no unaligned rows", *stem_texts), strict=True))


def token_forms_table(folder: str | Path = PERF) -> tuple[list[str], list[list[str]]]:
    """One row per form of the token-mixing MLP in the latest token-mixing record: the MLP
    alone (forward and, where the form trains, forward with backward: ms and TFLOP/s of its
    products) and, for the eager forms, the whole model with it (inference and training
    images/s, and as a multiple of the model's own form without the fused kernel measured
    in the same run); then the model's own rows that have no MLP of their name. The record
    is the latest whose run measured every product form in the model (:func:`_forms_record`)."""
    record = _forms_record(folder)
    headers = ["form", "MLP forward (ms)", "TFLOP/s", "MLP forward + backward (ms)",
               "TFLOP/s", "model inference (img/s)", "model training (img/s)"]
    if record is None:
        return headers, []
    models = record["model"]
    own = models.get(UNFUSED_OWN) or models.get(OWN)

    def vs(model: dict | None, key: str) -> str:
        if model is None:
            return "-"
        if own is None:
            return f"{model[key]:,.0f}"
        return f"{model[key]:,.0f} ({model[key] / own[key]:.2f}x)"

    out = []
    for name, mlp in record["mlp"].items():
        model = models.get(name)
        trains = mlp.get("train_ms") is not None
        out.append([name, f"{mlp['forward_ms']:.3f}", f"{mlp['forward_tflops']:.0f}",
                    f"{mlp['train_ms']:.3f}" if trains else "(inference only)",
                    f"{mlp['train_tflops']:.0f}" if trains else "-",
                    vs(model, "infer_img_s"), vs(model, "train_img_s")])
    for name, model in models.items():
        if name not in record["mlp"]:
            out.append([name, "-", "-", "-", "-", vs(model, "infer_img_s"),
                        vs(model, "train_img_s")])
    return headers, out


OWN, UNFUSED_OWN = "model's own", "model's own, unfused"
# the forms benchmarks/token_mixing.py also swaps into the whole model
MODEL_FORMS_TIMED = ("left", "left-bmm-add", "right", "broadcast-matmul", "transposed", "padded")


def _forms_record(folder: str | Path) -> dict | None:
    """The latest token-mixing record whose run got as far as timing each of its eager
    product forms in the whole model (a run cut short by its time limit keeps fewer; one of
    ``--checks-only`` times none)."""
    return _latest(folder, "benchmark-token-mixing-*.json", keep=lambda r: bool(r["mlp"]) and all(
        name in r["model"] for name in r["mlp"] if name in MODEL_FORMS_TIMED))


def token_forms_summary(folder: str | Path = PERF) -> dict[str, str]:
    """``tf_where`` (the latest token-mixing record) and ``tf_best`` (the eager form of the
    products with the fastest whole-model inference, as a multiple of the model's own form
    without the fused kernel), from the record :func:`token_forms_table` shows."""
    record = _forms_record(folder)
    models = (record or {}).get("model", {})
    own = models.get(UNFUSED_OWN) or models.get(OWN)
    if own is None:
        return {"tf_where": "not measured", "tf_best": "not measured"}
    forms = {k: v for k, v in models.items() if k not in (OWN, UNFUSED_OWN)}
    best = max(forms, key=lambda k: forms[k]["infer_img_s"])
    return {"tf_where": _title(record),
            "tf_best": f"{best}, {forms[best]['infer_img_s'] / own['infer_img_s']:.2f}x"}


# issue 17's targets on an H100 or H200 in bf16: (what, peer, measure, asked)
GPU_TARGETS = (("Mixer-B/16 / ViT-B/16, inference", "timm:vit_base_patch16_224", "inference",
                1.3),
               ("Mixer-B/16 / ViT-B/16, training", "timm:vit_base_patch16_224", "training",
                1.2),
               ("ours / timm's Mixer-B/16, inference", "timm:mixer_b16_224", "inference",
                1.15),
               ("ours / timm's Mixer-B/16, training", "timm:mixer_b16_224", "training",
                1.15))


def targets_table(folder: str | Path = PERF, batch: int = 128
                  ) -> tuple[list[str], list[list[str]]]:
    """Issue 17's GPU targets against the latest ``perf-gpu`` record at ``batch`` in bf16:
    each ratio eager and compiled (ours compiled against the peer compiled where the record
    compiled it, else against the peer eager, marked), and inference's share of the bf16
    matmul peak measured in the same run (the highest of its measurements,
    :func:`~mixer_lib.throughputs.peak_share`); met when a ratio of ours and the peer in the same
    mode reaches what was asked; the inference ratios and the share again with bf16 weights
    where the record measured them. The header names the record, and its model form where
    it is not today's."""
    record = _latest(folder, "benchmark-perf-gpu-*.json", "perf-gpu")
    headers = ["target", "asked", "eager", "compiled", "met"]
    if record is None:
        return headers, []
    out = [_target_row(record, batch, "bf16", *target) for target in GPU_TARGETS]
    out += [_target_row(record, batch, "bf16w", f"{what} (bf16 weights)", peer, measure, asked)
            for what, peer, measure, asked in GPU_TARGETS if measure == "inference"
            and any(q["dtype"] == "bf16w" and q["batch"] == batch for q in record["ratios"])]
    for dtype, what in DTYPE_WORDS.items():
        rows = {r["mode"]: r for r in record["rows"] if r["model"] == OURS
                and r["dtype"] == dtype and r["batch"] == batch}
        mfu = [peak_share(record, rows.get(mode)) for mode in ("eager", "compile")]
        best = max((m for m in mfu if m is not None), default=None)
        if dtype == "bf16" or best is not None:  # bf16 weights: where the record has them
            out.append([f"Mixer-B/16 inference ({what}), share of the bf16 matmul peak",
                        ">= 55 %", *(f"{100 * m:.0f} %" if m is not None else "-" for m in mfu),
                        "-" if best is None else "yes" if best >= 0.55 else "no"])
    earlier = ("" if of_current_form(record)
               else f", earlier model form: {record.get('model_form', 'not recorded')}")
    return [*headers[:-1], f"met ({_title(record)}, batch {batch}{earlier})"], out


def _target_row(record: dict, batch: int, dtype: str, what: str, peer: str, measure: str,
                asked: float) -> list[str]:
    """One row of :func:`targets_table`: ``what``, what was asked, the ratio of ours to
    ``peer`` (``measure``: inference or training) eager and compiled in ``dtype`` at
    ``batch``, and whether a ratio in like modes reaches ``asked``."""
    ratios = {q["mode"]: q for q in record["ratios"]
              if q["dtype"] == dtype and q["batch"] == batch and q["peer"] == peer}
    cells, like = [], []  # like: ratios of ours and the peer in the same mode
    for mode in ("eager", "compile"):
        q = ratios.get(mode) or {}
        if q.get(measure) is None:
            cells.append("-")
            continue
        same = q["peer_mode"] == mode
        cells.append(f"{q[measure]:.2f}x" + ("" if same else " (peer eager)"))
        like += [q[measure]] if same else []
    best = max(like, default=None)
    return [what, f">= {asked:g}x", *cells,
            "-" if best is None else "yes" if best >= asked else "no"]


def targets_verdict(folder: str | Path = PERF, batch: int = 128) -> str:
    """:func:`targets_table`'s last column in words: how many targets were met, and which were
    missed or not measured by name (the table names the met ones; "not measured" without a
    record)."""
    headers, rows = targets_table(folder, batch)
    if not rows:
        return "not measured"
    missed = [r[0] for r in rows if r[-1] == "no"]
    unread = [r[0] for r in rows if r[-1] not in ("yes", "no")]
    met = len(rows) - len(missed) - len(unread)
    notes = [f"missed: {'; '.join(missed)}"] if missed else []
    notes += [f"not measured: {'; '.join(unread)}"] if unread else []
    return (f"{'all ' if met == len(rows) else ''}{met} of {len(rows)} targets met"
            + (f" ({'; '.join(notes)})" if notes else ""))


def bf16_weights_speedup(folder: str | Path = PERF, batch: int = 128) -> str:
    """Our Mixer-B/16's inference with bf16 weights (``bf16w``) over bf16 autocast, eager, in
    the latest ``perf-gpu`` record at ``batch``; "not measured" without both rows."""
    record = _latest(folder, "benchmark-perf-gpu-*.json", "perf-gpu")
    if record is None:
        return "not measured"
    rows = {r["dtype"]: r for r in record["rows"] if r["model"] == OURS
            and r["mode"] == "eager" and r["batch"] == batch}
    if "bf16w" not in rows or "bf16" not in rows:
        return "not measured"
    return f"{rows['bf16w']['infer_img_s'] / rows['bf16']['infer_img_s']:.2f}x"
