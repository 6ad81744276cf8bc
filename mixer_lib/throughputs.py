"""The throughput records (E5: ``benchmarks/throughput.py --preset claims*``, committed as
``results/study/benchmark-claims*.json``) read for the ledger and the Claims chapter: the
measurements (one per device, dtype and mode, never mixed), the table of ratios to Mixer-B/16
beside the paper's TPU-v3 column, the figures the chapter quotes, and each record's
provenance."""

from __future__ import annotations

import json
from pathlib import Path

from mixer_lib.published import PAPER_THROUGHPUT

# ViT peers measured beside Mixer (timm model names), by their names in the paper
VIT_PEERS = {"ViT-B/16": "timm:vit_base_patch16_224", "ViT-L/16": "timm:vit_large_patch16_224"}


def claims_benchmarks(folder: str | Path) -> list[dict]:
    """Every E5 throughput record (``benchmark-claims*.json``) in ``folder``, by file name."""
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("benchmark-claims*.json"))]


def throughput_table(benches: list[dict]) -> tuple[list[str], list[list]]:
    """Headers and rows: each model's inference throughput relative to Mixer-B/16 in every
    measurement (see :func:`measurements`) that has Mixer-B/16, beside the paper's ratio."""
    runs = [(label, rows) for label, rows in measurements(benches) if "Mixer-B/16" in rows]
    models: dict[str, dict] = {}
    for _, rows in runs:
        for name, r in rows.items():
            models.setdefault(name, r)
    out = []
    for name, r in models.items():
        short = next((vit for vit, timm in VIT_PEERS.items() if timm == name), name)
        paper = PAPER_THROUGHPUT.get(short)
        base, _, opts = short.partition("@")  # the resolution has its own column
        shown = base + (", token MLP D_S x 4 (App. C)" if "tokens_mlp_dim" in opts else "")
        out.append([shown, r.get("img_size") or 224, f"{r['gflops_fwd']:.1f}",
                    *[f"{rows[name]['infer_img_s'] / rows['Mixer-B/16']['infer_img_s']:.2f}"
                      if name in rows else "-" for _, rows in runs],
                    f"{paper / PAPER_THROUGHPUT['Mixer-B/16']:.2f}" if paper else "-"])
    return (["model", "px", "GFLOPs", *[label for label, _ in runs],
             "paper (TPU-v3)"], out)


def measurements(benches: list[dict]) -> list[tuple[str, dict[str, dict]]]:
    """One ``(label, rows by model)`` per record, dtype and mode measured in ``benches``; the
    label names the device, dtype and mode (``"H200 bf16 eager"``), and the record's preset
    too when an earlier record already has that label (``"H200 bf16 eager
    [claims-gpu-compile]"``). Ratios are only ever taken within one measurement."""
    out: dict[str, dict[str, dict]] = {}
    for bench in benches:
        device = bench["environment"]["device"].split(" (")[0].replace("NVIDIA ", "")
        mine: dict[str, dict[str, dict]] = {}
        for r in bench["rows"]:
            mine.setdefault(f"{device} {r['dtype']} {r['mode']}", {})[r["model"]] = r
        for label, rows in mine.items():
            out[f"{label} [{bench.get('preset', '?')}]" if label in out else label] = rows
    return list(out.items())


THROUGHPUT_KEYS = ("b16_ratio_cpu_fp32_eager", "b16_ratio_H200_fp32_eager",
                   "b16_ratio_H200_bf16_eager", "b16_ratio_H200_bf16_compile",
                   "h200_mixer_tflops", "h200_vit_tflops", "h200_peak")


def throughput_summary(benches: list[dict]) -> dict[str, str]:
    """The figures the Claims chapter quotes from the E5 records: Mixer-B/16 / ViT-B/16
    inference throughput for the first record of each (device, dtype, mode) as
    ``b16_ratio_<device>_<dtype>_<mode>``, and on the H200 in bf16 the achieved TFLOP/s of both
    (forward GFLOPs x images/s) with the bf16 matmul peak measured in the same run. A figure
    without a record reads "(not measured)"."""
    text = {k: "(not measured)" for k in THROUGHPUT_KEYS}
    achieved = {}
    for label, rows in measurements(benches):
        m, v = rows.get("Mixer-B/16"), rows.get(VIT_PEERS["ViT-B/16"])
        if m and v and "[" not in label:  # the first record of each device, dtype, mode
            key = label.replace(" ", "_")
            text[f"b16_ratio_{key}"] = f"{m['infer_img_s'] / v['infer_img_s']:.2f}x"
            achieved[key] = (m["gflops_fwd"] * m["infer_img_s"] / 1e3,
                             v["gflops_fwd"] * v["infer_img_s"] / 1e3)
    if "H200_bf16_eager" in achieved:
        mix, vit = achieved["H200_bf16_eager"]
        peak = next(b["matmul_peak_tflops"] for b in benches if b["preset"] == "claims-gpu")
        text |= {"h200_mixer_tflops": f"{mix:.0f}", "h200_vit_tflops": f"{vit:.0f}",
                 "h200_peak": f"{peak:.0f}"}
    return text


def provenance_lines(benches: list[dict]) -> list[str]:
    """One line per benchmark record: preset, device, batch, torch, commit, date."""
    return [f"[{b['preset']}] {b['environment']['device']}, batch {b['rows'][0]['batch']}, "
            f"torch {b['environment']['torch']}, commit "
            f"{str(b['environment']['git_commit'])[:12]}, {b['environment']['date']}"
            for b in benches]
