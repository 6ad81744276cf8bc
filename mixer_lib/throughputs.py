"""The throughput records read for the ledger and the Claims chapter: E5's
(``benchmarks/throughput.py --preset claims*``, committed as
``results/study/benchmark-claims*.json``) and the performance presets' (``--preset perf-*``,
``results/perf/benchmark-perf-*.json``, which measure Mixer-B/16 and ViT-B/16 too). Each
record yields one measurement per device, dtype, mode and batch, never mixed; a measurement
made with an earlier form of the model (``model_form``, :data:`MODEL_FORMS`) is replaced in
the verdicts by one of a later form on the same device, dtype and mode, and shown beside it
with what changed. Also: the table of ratios to Mixer-B/16 beside the paper's TPU-v3 column,
the figures the chapter quotes, and each record's provenance."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mixer_lib.published import PAPER_THROUGHPUT

# ViT peers measured beside Mixer (timm model names), by their names in the paper
VIT_PEERS = {"ViT-B/16": "timm:vit_base_patch16_224", "ViT-L/16": "timm:vit_large_patch16_224"}

# How our Mixer computed when a record was made (model.MODEL_FORM, written by the benchmark
# since the (B, S, C) layout; the earlier records carry it as an annotation from their
# commit), oldest first, each with what it is.
MODEL_FORMS = {
    "bcs-expand": "the (B, C, S) stream up to c090817: LayerNorms reading transposed memory, "
                  "the token-mixing weight expanded per sample (a bf16 copy per sample "
                  "under autocast)",
    "bsc-tokendense": "one contiguous (B, S, C) stream from the stem on, token mixing by "
                      "TokenDense (no transposes, no per-sample weight copies), from 4eb6ba1",
    "bsc-token-kernel": "the same, and at inference on a GPU (bf16 or fp16) each block's "
                        "token mixing, its residual add included, in one Triton kernel "
                        "(mixer_lib.token_kernel: the hidden activations never stored), "
                        "from 342217d",
    "gemm-stem-dense-gelu": "the same, with the stem as one product over the flattened "
                            "patches instead of a strided convolution (on every device); at "
                            "inference the LayerNorms in autocast's compute dtype instead of "
                            "float32, and on a GPU the channel MLP's first dense layer, its "
                            "bias and tanh GELU in one cuBLASLt call (mixer_lib.dense_gelu), "
                            "from 1bb10b0",
    "gemm-stem-tma": "the same on a CPU; at inference on a Hopper GPU the token kernel's TMA "
                     "form (tiles moved by the tensor memory accelerator) by default, and the "
                     "one-call dense layer and GELU only without autocast (with the weights "
                     "in the compute dtype), as the H200 records of 2f7240f supported, from "
                     "2026-11-28 (after 421b90a)",
}
# forms that changed only what runs on a GPU: on a CPU the model computes as in the form
# before, so a CPU record of that form is of today's form there
GPU_ONLY_FORMS = frozenset({"gemm-stem-tma"})

REPO = Path(__file__).resolve().parents[1]
FOLDERS = (REPO / "results" / "study", REPO / "results" / "perf")
PATTERNS = ("benchmark-claims*.json", "benchmark-perf-*.json")


def throughput_benchmarks(folders: tuple[str | Path, ...] = FOLDERS) -> list[dict]:
    """Every throughput record in ``folders`` (E5's and the perf presets'), by date."""
    found = {p for folder in folders for pattern in PATTERNS for p in Path(folder).glob(pattern)}
    benches = [json.loads(p.read_text()) for p in sorted(found)]
    return sorted(benches, key=lambda b: b["environment"].get("date", ""))


def form_rank(bench: dict) -> int:
    """Position of the record's model form in :data:`MODEL_FORMS` (-1 when not recorded)."""
    forms = list(MODEL_FORMS)
    form = bench.get("model_form")
    return forms.index(form) if form in forms else -1


def of_current_form(bench: dict) -> bool:
    """Whether the record was made with today's model form (the last of :data:`MODEL_FORMS`,
    ``model.MODEL_FORM``); for a record made on a CPU, with the form that computes there as
    today's does (the last form not in :data:`GPU_ONLY_FORMS`, or a later one)."""
    forms = list(MODEL_FORMS)
    if str(bench.get("environment", {}).get("device", "")).startswith("cpu"):
        last = max(i for i, form in enumerate(forms) if form not in GPU_ONLY_FORMS)
        return form_rank(bench) >= last
    return form_rank(bench) == len(forms) - 1


@dataclass(frozen=True)
class Measurement:
    """One device, dtype, mode and batch of one record: its rows by model."""

    label: str
    device: str
    dtype: str
    mode: str
    batch: int | None
    rows: dict[str, dict]
    bench: dict

    @property
    def key(self) -> tuple[str, str, str]:
        return self.device, self.dtype, self.mode

    @property
    def title(self) -> str:
        """The label, with "(earlier form)" when the record's model form is not today's."""
        return self.label + ("" if of_current_form(self.bench) else " (earlier form)")

    def ratio(self, model: str, peer: str) -> float:
        return self.rows[model]["infer_img_s"] / self.rows[peer]["infer_img_s"]


def short_device(bench: dict) -> str:
    return bench["environment"]["device"].split(" (")[0].replace("NVIDIA ", "")


def measurements(benches: list[dict]) -> list[Measurement]:
    """One :class:`Measurement` per record, dtype, mode and batch in ``benches``; the label
    names the device, dtype and mode (``"H200 bf16 eager"``), the batch when the record
    measured several (``"H200 bf16 eager b512"``), and the record's preset when an earlier
    record already has that label (``"H200 bf16 eager [claims-gpu-compile]"``), and its date
    when one of the same preset does too. Ratios are only ever taken within one
    measurement."""
    out: dict[str, Measurement] = {}
    for bench in benches:
        device = short_device(bench)
        mine: dict[tuple, dict[str, dict]] = {}
        for r in bench["rows"]:
            mine.setdefault((r["dtype"], r["mode"], r.get("batch")), {})[r["model"]] = r
        for (dtype, mode, batch), rows in mine.items():
            several = len({b for d, m, b in mine if (d, m) == (dtype, mode)}) > 1
            base = f"{device} {dtype} {mode}" + (f" b{batch}" if several else "")
            preset, date = bench.get("preset", "?"), str(bench["environment"].get("date"))
            label = next(name for name in (base, f"{base} [{preset}]",
                                           f"{base} [{preset}, {date[:16]}]",
                                           *(f"{base} [{preset}, {date[:16]}, {n}]"
                                             for n in range(2, len(benches) + 2)))
                         if name not in out)
            out[label] = Measurement(label, device, dtype, mode, batch, rows, bench)
    return list(out.values())


def current(runs: list[Measurement], models: tuple[str, ...]
            ) -> tuple[list[Measurement], list[tuple[Measurement, list[Measurement]]]]:
    """The measurements that have all of ``models`` and are of the latest model form
    measured on their device, dtype and mode; and each one of an earlier form that those
    replace, with its replacements."""
    having = [m for m in runs if all(name in m.rows for name in models)]
    latest: dict[tuple, int] = {}
    for m in having:
        latest[m.key] = max(latest.get(m.key, -1), form_rank(m.bench))
    kept = [m for m in having if form_rank(m.bench) == latest[m.key]]
    replaced = [(m, [k for k in kept if k.key == m.key]) for m in having if m not in kept]
    return kept, replaced


def _what_changed(old: Measurement, new: Measurement) -> str:
    """The differences between two records of one device, dtype and mode: model form
    (:func:`forms_table` says what each is), batch, torch, commit."""
    def field(m: Measurement, key: str) -> str:
        value = m.bench.get("model_form") if key == "form" else m.batch if key == "batch" \
            else m.bench["environment"].get("git_commit" if key == "commit" else key)
        return str(value)[:7] if key == "commit" else str(value)

    return "; ".join(f"{key} {field(old, key)} -> {field(new, key)}"
                     for key in ("form", "batch", "torch", "commit")
                     if field(old, key) != field(new, key))


def replaced_table(benches: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Earlier-form measurements of Mixer-B/16 against ViT-B/16 that the verdict no longer
    reads: each with the measurement that replaces it, both ratios and what changed."""
    pair = ("Mixer-B/16", VIT_PEERS["ViT-B/16"])
    _, replaced = current(measurements(benches), pair)
    rows = [[old.title, f"{old.ratio(*pair):.2f}x", new.title, f"{new.ratio(*pair):.2f}x",
             _what_changed(old, new)] for old, news in replaced for new in news]
    return (["measurement", "Mixer-B/16 / ViT-B/16", "replaced by", "Mixer-B/16 / ViT-B/16",
             "what changed"], rows)


def forms_table() -> tuple[list[str], list[list[str]]]:
    """The forms of our model that records name (:data:`MODEL_FORMS`), oldest first."""
    return ["model form", "how Mixer computes"], [[k, v] for k, v in MODEL_FORMS.items()]


PEERS = {"legacy:Mixer-B/16": "its earlier form", "timm:mixer_b16_224": "timm's Mixer-B/16",
         VIT_PEERS["ViT-B/16"]: "ViT-B/16"}


# the benchmark's dtypes that time the bf16 matmul peak: bf16 autocast and bf16 weights
BF16_DTYPES = ("bf16", "bf16w")


def bf16_peak(record: dict) -> float | None:
    """The highest bf16 matmul peak a throughput record measured (``matmul_peak_tflops`` and
    the ``bf16`` and ``bf16w`` entries of ``matmul_peak_tflops_by_dtype``: the same product,
    measured more than once in the run), None where it measured none."""
    by_dtype = record.get("matmul_peak_tflops_by_dtype") or {}
    found = [p for p in (record.get("matmul_peak_tflops"), *map(by_dtype.get, BF16_DTYPES))
             if p]
    return max(found, default=None)


def peak_share(record: dict, row: dict | None, measure: str = "infer") -> float | None:
    """A bf16 row's ``{measure}_tflops`` (``infer`` or ``train``) as a share of
    :func:`bf16_peak` of its record (the benchmark's ``infer_mfu`` and ``mfu`` took each
    dtype's own measurement, which varied by up to 8 % within one H200 run before
    2026-11-28); None without the row, its TFLOP/s or a peak."""
    peak = bf16_peak(record)
    if row is None or not peak or row.get(f"{measure}_tflops") is None:
        return None
    return row[f"{measure}_tflops"] / peak


def peer_table(benches: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Our Mixer-B/16 against its peers measured in the same run (its earlier form, timm's
    Mixer-B/16, ViT-B/16): inference / training images/s ratios per measurement (training
    "-" where a record measured inference only), and our training at the fraction of the
    matmul peak measured in that run (in bf16 the highest of its bf16 measurements)."""
    out = []
    for run in measurements(benches):
        ours = run.rows.get("Mixer-B/16")
        if ours is None or not any(peer in run.rows for peer in PEERS):
            continue
        cells = []
        for peer in PEERS:
            theirs = run.rows.get(peer)
            if theirs is None:
                cells.append("-")
                continue
            train = (f"{ours['train_img_s'] / theirs['train_img_s']:.2f}x"
                     if ours.get("train_img_s") and theirs.get("train_img_s") else "-")
            cells.append(f"{run.ratio('Mixer-B/16', peer):.2f}x / {train}")
        # bf16: against the run's highest bf16 peak, else the row's own share
        share = peak_share(run.bench, ours, "train") if run.dtype.startswith("bf16") else None
        share = share or ours.get("mfu")
        mfu = f"{100 * share:.0f} %" if share else "-"
        out.append([run.title, str(run.batch), *cells, mfu])
    return (["measurement", "batch", *[f"ours / {name} (inference / training)"
                                       for name in PEERS.values()],
             "ours, training at % of the matmul peak"], out)


TIMM_MIXER = "timm:mixer_b16_224"


def _matmul_splits(benches: list[dict]) -> list[tuple[Measurement, str, float, float,
                                                       float | None]]:
    """Per measurement and model whose row replayed a training step's products
    (``train_matmul_s``): (measurement, model, step seconds, products' seconds, and for
    Mixer-B/16 timm's Mixer-B/16 step over our products' seconds, else None)."""
    out = []
    for run in measurements(benches):
        timm = run.rows.get(TIMM_MIXER, {})
        for name, r in run.rows.items():
            if not (r.get("train_matmul_s") and r.get("train_img_s")):
                continue
            bound = (timm["batch"] / timm["train_img_s"] / r["train_matmul_s"]
                     if name == "Mixer-B/16" and timm.get("train_img_s") else None)
            out.append((run, name, r["batch"] / r["train_img_s"], r["train_matmul_s"], bound))
    return out


def matmul_table(benches: list[dict],
                 target: float = 1.1) -> tuple[list[str], list[list[str]]]:
    """Where a training step's time goes, per measurement whose record replayed the step's
    matrix products alone (``train_matmul_s``, :mod:`mixer_lib.matmuls`): for each model the
    step's seconds, its products' seconds and the share of the step outside them; for
    Mixer-B/16 also the most it could train faster than timm's Mixer-B/16 if nothing but its
    products took time (timm's step over our products' seconds), against issue 17's
    ``target``. Both Mixers' products are the same layers with the same FLOPs, arranged
    differently in token mixing (tests/test_matmuls.py)."""
    out = [[run.title, PEERS.get(name, name), f"{step:.3f}", f"{products:.3f}",
            f"{100 * (1 - products / step):.0f} %",
            "-" if bound is None else
            f"{_times(bound, target)} ({'reaches' if bound >= target else 'short of'} "
            f"{target:g}x)"]
           for run, name, step, products, bound in _matmul_splits(benches)]
    return (["measurement", "model", "training step (s)", "its matrix products alone (s)",
             "step outside them", "ours with nothing but its products / timm's Mixer-B/16, "
             "training"], out)


def matmul_summary(benches: list[dict], device: str = "cpu",
                   target: float = 1.1) -> dict[str, str]:
    """The figures the Claims chapter quotes from the latest measurement on ``device`` (as
    :func:`short_device` names it) with a replay of Mixer-B/16's and timm's Mixer-B/16's
    products (:func:`matmul_table`): ``mm_where``,
    the share of each step outside its products (``mm_ours_outside``, ``mm_timm_outside``),
    ours' bound on timm's Mixer (``mm_bound``) and what it means for a ``target`` speed-up
    (``mm_verdict``); "not measured" without one. Also ``mm_elsewhere``: the measurements on
    other devices that replay a step's products ("none yet")."""
    keys = ("mm_where", "mm_ours_outside", "mm_timm_outside", "mm_bound", "mm_verdict")
    splits = _matmul_splits(benches)
    elsewhere = {"mm_elsewhere": ", ".join(dict.fromkeys(
        run.title for run, *_ in splits if run.device != device)) or "none yet"}
    outside = {(run.label, name): f"{100 * (1 - products / step):.0f} %"
               for run, name, step, products, _ in splits if run.device == device}
    last = next((s for s in reversed(splits) if s[0].device == device and s[4] is not None
                 and (s[0].label, TIMM_MIXER) in outside), None)
    if last is None:
        return dict.fromkeys(keys, "not measured") | elsewhere
    run, _, _, _, bound = last
    verdict = (f"short of the {target:g}x asked, so removing the element-wise work cannot "
               f"reach it while the products take what they take" if bound < target else
               f"at least the {target:g}x asked, so removing other work could reach it")
    return dict(zip(keys, (run.title, outside[run.label, "Mixer-B/16"],
                           outside[run.label, TIMM_MIXER], _times(bound, target), verdict),
                    strict=True)) | elsewhere


def _times(ratio: float, target: float) -> str:
    """``ratio`` as ``"1.23x"``, with a third or fourth decimal where two would print a
    ratio just short of ``target`` as ``target`` itself (1.096 -> "1.096x", not "1.10x")."""
    digits = 2
    while digits < 4 and ratio < target <= round(ratio, digits):
        digits += 1
    return f"{ratio:.{digits}f}x"


def throughput_table(benches: list[dict]) -> tuple[list[str], list[list]]:
    """Headers and rows: each model's inference throughput relative to Mixer-B/16 in every
    measurement (see :func:`measurements`) that has Mixer-B/16 and a model other than its
    peers (E5's variants and resolutions; :func:`peer_table` has Mixer-B/16 against its
    peers in every measurement), beside the paper's ratio. A column of an earlier model form
    says so (:attr:`Measurement.title`)."""
    runs = [m for m in measurements(benches) if "Mixer-B/16" in m.rows
            and len(set(m.rows) - set(PEERS) - {"Mixer-B/16"}) > 0]
    models: dict[str, dict] = {}
    for m in runs:
        for name, r in m.rows.items():
            models.setdefault(name, r)
    out = []
    for name, r in models.items():
        short = next((vit for vit, timm in VIT_PEERS.items() if timm == name), name)
        paper = PAPER_THROUGHPUT.get(short)
        base, _, opts = short.partition("@")  # the resolution has its own column
        shown = base + (", token MLP D_S x 4 (App. C)" if "tokens_mlp_dim" in opts else "")
        out.append([shown, r.get("img_size") or 224, f"{r['gflops_fwd']:.1f}",
                    *[f"{m.ratio(name, 'Mixer-B/16'):.2f}" if name in m.rows else "-"
                      for m in runs],
                    f"{paper / PAPER_THROUGHPUT['Mixer-B/16']:.2f}" if paper else "-"])
    return ["model", "px", "GFLOPs", *[m.title for m in runs], "paper (TPU-v3)"], out


THROUGHPUT_KEYS = ("b16_ratio_cpu_fp32_eager", "b16_ratio_H200_fp32_eager",
                   "b16_ratio_H200_bf16_eager", "b16_ratio_H200_bf16_compile",
                   "h200_mixer_tflops", "h200_vit_tflops", "h200_peak")


def throughput_summary(benches: list[dict]) -> dict[str, str]:
    """The figures the Claims chapter quotes: Mixer-B/16 / ViT-B/16 inference throughput in
    the current measurements (:func:`current`) of each (device, dtype, mode), from the latest
    record that has them (its first batch), as
    ``b16_ratio_<device>_<dtype>_<mode>``, and on the H200 in bf16 the achieved TFLOP/s of both
    (forward GFLOPs x images/s) with the bf16 matmul peak measured in the same run. A figure
    without a record reads "(not measured)"."""
    text = {k: "(not measured)" for k in THROUGHPUT_KEYS}
    latest: dict[tuple, Measurement] = {}
    for run in current(measurements(benches), ("Mixer-B/16", VIT_PEERS["ViT-B/16"]))[0]:
        date = run.bench["environment"].get("date", "")
        if run.key not in latest or latest[run.key].bench["environment"].get("date", "") < date:
            latest[run.key] = run
    for run in latest.values():
        key = "_".join(run.key).replace(" ", "_")
        text[f"b16_ratio_{key}"] = f"{run.ratio('Mixer-B/16', VIT_PEERS['ViT-B/16']):.2f}x"
        if key == "H200_bf16_eager":
            mix, vit = (run.rows[m]["gflops_fwd"] * run.rows[m]["infer_img_s"] / 1e3
                        for m in ("Mixer-B/16", VIT_PEERS["ViT-B/16"]))
            peak = (run.bench.get("matmul_peak_tflops_by_dtype") or {}).get("bf16") \
                or run.bench.get("matmul_peak_tflops")
            text |= {"h200_mixer_tflops": f"{mix:.0f}", "h200_vit_tflops": f"{vit:.0f}"}
            if peak:
                text["h200_peak"] = f"{peak:.0f}"
    return text


def preset_line(bench: dict) -> str:
    """A record in a few words: preset, model form, commit, date."""
    env = bench["environment"]
    return (f"[{bench.get('preset', '?')}] form {bench.get('model_form', 'not recorded')}, "
            f"commit {str(env.get('git_commit'))[:12]}, {str(env.get('date'))[:10]}")


def incomplete_note(bench: dict) -> str:
    """What a record lacks, in words: the measurements that failed (each with its error),
    or that the run was cut short; "" for a complete record."""
    if bench.get("complete", True):
        return ""
    failed = bench.get("failed") or []
    why = "; ".join(f"{f['what']} failed ({f['error']})" for f in failed) or "cut short"
    return f" ({bench.get('measured')} measurements; {why})"


def provenance_lines(benches: list[dict]) -> list[str]:
    """One line per benchmark record: preset, device (and host processor, where recorded),
    batches, model form, torch, commit, date (of its last write), and when a later run of
    the same commit resumed it (``--resume``)."""
    lines = []
    for b in benches:
        env, batches = b["environment"], sorted({r["batch"] for r in b["rows"]})
        host = f" on {env['processor']}" if env.get("processor") else ""
        resumed = "".join(f", resumed {str(r['date'])[:16]} after {r['measured_before']}"
                          for r in b.get("resumed") or [])
        lines.append(f"[{b['preset']}] {env['device']}{host}, batch "
                     f"{', '.join(map(str, batches))}, model form "
                     f"{b.get('model_form', 'not recorded')}, torch {env['torch']}, commit "
                     f"{str(env['git_commit'])[:12]}, {env['date']}{resumed}"
                     + incomplete_note(b))
    return lines


def compile_payback(benches: list[dict], model: str = "Mixer-B/16"
                    ) -> tuple[list[str], list[list[str]]]:
    """When ``torch.compile`` pays for itself in a training run, from each record that timed
    ``model``'s first calls eager and compiled (same dtype and batch): the compile time (first
    compiled training step and first compiled inference call, less a step of each), the
    training step eager and compiled, and the number of training steps after which the time
    saved covers the compile time ("never" when the compiled step is not faster)."""
    out = []
    for bench in benches:
        rows = {(r["dtype"], r["batch"], r["mode"]): r for r in bench["rows"]
                if r["model"] == model and r.get("first_train_s") is not None}
        for (dtype, batch, mode), comp in rows.items():
            eager = rows.get((dtype, batch, "eager"))
            if mode != "compile" or eager is None:
                continue
            step_e, step_c = batch / eager["train_img_s"], batch / comp["train_img_s"]
            cost = (comp["first_train_s"] - step_c) + (comp["first_infer_s"]
                                                      - batch / comp["infer_img_s"])
            saved = step_e - step_c
            steps = (f"{cost / saved:,.0f} ({cost / saved * step_e / 60:,.1f} min eager)"
                     if saved > 0 else "never (the compiled step is slower)")
            out.append([short_device(bench), dtype, str(batch), f"{cost:.0f}",
                        f"{step_e:.3f}", f"{step_c:.3f}", steps, preset_line(bench)])
    return (["device", "dtype", "batch", "compile s", "eager step s", "compiled step s",
             "steps to pay back", "record"], out)
