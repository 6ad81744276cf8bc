"""The claims ledger and the autopsy: verdicts computed from committed records by stated rules.

Every claim gets one of :data:`VERDICTS`, or ``pending`` while the study records it needs are
not committed yet (the study runs in pieces). The rules are in each function's docstring and
are printed by the book's Claims chapter.

* :func:`autopsy` — each deviation of the published reproduction from the recipe: its effect
  on fine-tuned test top-1 against the official recipe (points, mean over seeds) with a
  standard error;
* :func:`ledger` — the paper's claims with the paper's evidence, ours and a verdict.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping
from pathlib import Path

VERDICTS = ("reproduced", "partly", "not reproduced", "not testable here")
PENDING = "pending"
SEEDS = (0, 1)
DEVIATION_NAMES = {
    "batch64": "training batch 64 with the lr, steps and warm-up meant for 512",
    "no-shuffle": "training data in the same order every epoch",
    "no-flip": "no horizontal flip",
    "exact-gelu": "exact (erf) GELU instead of the official tanh approximation",
    "scheduler-first": "learning-rate scheduler stepped before the optimiser",
    "select-on-test": "best of periodic test evaluations reported (selection on test)",
    "eval-resize": "evaluation resizes instead of the paper's resize-smaller-side + crop",
    "all": "all of the above together",
}
# which of the reproduction report's five suggested explanations each deviation belongs to
EXPLANATIONS = {
    "fine-tuning settings": ("batch64", "no-flip"),
    "implementation details": ("no-shuffle", "exact-gelu", "scheduler-first"),
    "unreported details": ("eval-resize",),
    "randomness": (),
    "hardware": (),
}
# ViT peers measured beside Mixer (timm model names), by their names in the paper
VIT_PEERS = {"ViT-B/16": "timm:vit_base_patch16_224", "ViT-L/16": "timm:vit_large_patch16_224"}
# paper Table 3, inference throughput, img/s per TPU-v3 core at 224 px
PAPER_THROUGHPUT = {"Mixer-S/32": 11489, "Mixer-B/32": 4208, "Mixer-S/16": 3994,
                    "Mixer-B/16": 1384, "Mixer-L/32": 1314, "Mixer-L/16": 419,
                    "Mixer-H/14": 194, "ViT-B/16": 861, "ViT-L/16": 280}


def _var(top1: float, n: int) -> float:
    """Binomial variance (points^2) of a top-1 estimate on ``n`` images."""
    return top1 * (100.0 - top1) / n


def group_mean(runs: list[dict]) -> tuple[float, float]:
    """Mean top-1 of ``runs`` (points) and its standard error: the seed-to-seed sample
    variance, floored by the binomial variance of one run's test estimate (so two equal seeds
    do not claim zero error), over the number of runs."""
    values = [r["top1"] for r in runs]
    floor = statistics.fmean(_var(r["top1"], r["num_eval"]) for r in runs)
    var = statistics.variance(values) if len(values) > 1 else floor
    return statistics.fmean(values), math.sqrt(max(var, floor) / len(values))


def group_effect(a: list[dict], b: list[dict]) -> tuple[float, float]:
    """Mean top-1 of runs ``b`` minus that of runs ``a`` (points) and its standard error,
    the two groups' standard errors (:func:`group_mean`) combined."""
    (ma, sa), (mb, sb) = group_mean(a), group_mean(b)
    return mb - ma, math.hypot(sa, sb)


def _runs(records: Mapping[str, dict], prefix: str) -> list[dict]:
    return [records[f"{prefix}-s{s}"] for s in SEEDS if f"{prefix}-s{s}" in records]


def autopsy(records: Mapping[str, dict]) -> list[dict]:
    """Each deviation (and all together) against the official recipe (``e1-ft-mixer``)."""
    official = _runs(records, "e1-ft-mixer")
    rows = []
    for dev, what in DEVIATION_NAMES.items():
        runs = _runs(records, f"e6-{dev}")
        if len(runs) < 2 or len(official) < 2:
            rows.append({"deviation": dev, "description": what, "effect_points": None,
                         "se": None, "seeds": len(runs), "status": PENDING})
            continue
        effect, se = group_effect(official, runs)
        rows.append({"deviation": dev, "description": what, "effect_points": effect,
                     "se": se, "seeds": len(runs),
                     "status": "measured"})
    return rows


def explanation_support(rows: list[dict], records: Mapping[str, dict] | None = None,
                        reference: Mapping[str, dict] | None = None) -> dict[str, str]:
    """For each of the reproduction report's five explanations: "supported" when one of its
    deviations costs accuracy by more than two standard errors, "not supported" when all were
    measured and none does, "not tested here" when none of its deviations was run.
    Randomness: "not supported" when the official recipe's seed-to-seed spread (standard
    deviation) is under 1 point, a third of the smallest shortfall (3 points); else
    "supported". Hardware: with ``reference`` (the same upstream run made on another device,
    :func:`mixer_lib.study.reference_records`), "not supported" when the two devices' test
    top-1 differ by less than two standard errors and less than 1 point; else "supported"."""
    measured = {r["deviation"]: r for r in rows if r["effect_points"] is not None}
    official = _runs(records or {}, "e1-ft-mixer")
    out = {}
    for name, devs in EXPLANATIONS.items():
        if name == "randomness":
            if len(official) < 2:
                out[name] = PENDING
            else:
                spread = statistics.stdev(r["top1"] for r in official)
                out[name] = (f"{'not supported' if spread < 1.0 else 'supported'} (seed-to-"
                             f"seed spread {spread:.2f} points)")
            continue
        if name == "hardware" and reference and records:
            pairs = [(reference[n], records[n]) for n in reference if n in records]
            if pairs:
                ref, here = pairs[0]
                d, se = group_effect([ref], [here])
                dev_a, dev_b = (x["environment"]["device"].split(" (")[0] for x in (ref, here))
                small = abs(d) < 2 * se and abs(d) < 1.0
                out[name] = (f"{'not supported' if small else 'supported'} (the same run on "
                             f"{dev_a} and on {dev_b}: {ref['top1']:.2f} vs {here['top1']:.2f}"
                             f", {d:+.2f} ± {se:.2f} points)")
                continue
        if not devs:
            out[name] = "not tested here"
            continue
        have = [measured[d] for d in devs if d in measured]
        if any(r["effect_points"] < -2 * r["se"] for r in have):
            out[name] = "supported"
        elif len(have) == len(devs):
            out[name] = "not supported"
        else:
            out[name] = PENDING
    return out


def ledger(records: Mapping[str, dict], benches: list[dict] | None,
           protocols: list[dict] | None = None, table1_ok: tuple[int, int] | None = None
           ) -> list[dict]:
    """The claims, each with the paper's evidence, this project's and a verdict.

    ``records``: the study's committed records by run name; ``benches``: the E5 throughput
    records (``results/study/benchmark-claims*.json``); ``protocols``: protocol records of
    the paper profile; ``table1_ok``: (variants whose head-less count rounds to Table 1's,
    variants).
    """
    out = []
    benches = benches or []

    def add(cid, claim, paper, verdict, evidence, chapter):
        out.append({"id": cid, "claim": claim, "paper_evidence": paper, "verdict": verdict,
                    "evidence": evidence, "chapter": chapter})

    # 1. Table 1
    if table1_ok is not None:
        ok, n = table1_ok
        add("table1", "The seven variants have the parameter counts of Table 1.",
            "Table 1 (millions, without the head).",
            "reproduced" if ok == n else ("partly" if ok else "not reproduced"),
            f"{ok} of {n} head-less counts of the built models round to Table 1's figures.",
            "architecture")
    # 2. accuracy at scale
    real = [p for p in protocols or [] if not p.get("dry_run")
            and p["dataset"] == "imagenet1k" and p.get("test_top1_mean") is not None]
    if real:
        from mixer_lib.records import PAPER

        p = real[0]
        paper = PAPER.get((p["variant"], p["weights"]), {}).get("imagenet1k")
        gap = p["test_top1_mean"] - paper if paper else None
        verdict = (PENDING if gap is None else "reproduced" if abs(gap) <= 1 else
                   "partly" if abs(gap) <= 3 else "not reproduced")
        add("accuracy", "Pre-trained at scale, Mixer reaches accuracy competitive with CNNs "
            "and ViT (ImageNet top-1 after fine-tuning).", "Tables 2 and 3.", verdict,
            f"{p['variant']} ({p['weights']}): ImageNet top-1 {p['test_top1_mean']:.2f} "
            f"(paper {paper}).", "results")
    else:
        add("accuracy", "Pre-trained at scale, Mixer reaches accuracy competitive with CNNs "
            "and ViT (ImageNet top-1 after fine-tuning).", "Tables 2 and 3.",
            "not testable here", "Needs the released checkpoints, ImageNet and a GPU: the "
            "`paper` profile runs it (its dry run checks the code path).", "results")
    # 3-4. throughput: every measurement (device, dtype, mode) of every E5 record
    runs = measurements(benches)
    pairs = [(vit.replace("ViT", "Mixer"), timm, vit) for vit, timm in VIT_PEERS.items()]
    ratios = [(label, vit, rows[m]["infer_img_s"] / rows[v]["infer_img_s"])
              for label, rows in runs for m, v, vit in pairs if m in rows and v in rows]
    if ratios:
        faster = sum(r > 1 for _, _, r in ratios)
        paper_r = {vit: PAPER_THROUGHPUT[m] / PAPER_THROUGHPUT[vit] for m, _, vit in pairs}
        add("throughput", "Mixer has higher throughput than ViT of the same size.",
            "Table 3: " + ", ".join(f"{k.replace('ViT', 'Mixer')} / {k} {v:.2f}x"
                                   for k, v in paper_r.items()) + " (TPU-v3).",
            "reproduced" if faster == len(ratios) else ("partly" if faster else
                                                        "not reproduced"),
            "Inference, Mixer / ViT of the same size, measured here: " + "; ".join(
                f"{label}: " + ", ".join(f"{vit} {r:.2f}x" for lab, vit, r in ratios
                                         if lab == label)
                for label in dict.fromkeys(lab for lab, _, _ in ratios)) + ".", "claims")
    else:
        add("throughput", "Mixer has higher throughput than ViT of the same size.",
            "Table 3.", PENDING,
            "benchmarks/throughput.py --preset claims has not been recorded.", "claims")
    linear = []
    for label, rows in runs:
        base, big = rows.get("Mixer-B/16"), rows.get("Mixer-B/16@img_size=448")
        if base and big:
            wide = rows.get("Mixer-B/16@img_size=448,tokens_mlp_dim=1536")
            linear.append((label, base["infer_img_s"] / big["infer_img_s"],
                           base["infer_img_s"] / wide["infer_img_s"] if wide else None))
    if linear:  # S: 196 -> 784 patches
        ok = sum(0.75 <= cost / 4.0 <= 1.33 for _, cost, _ in linear)
        add("linear", "Mixer's cost grows linearly with the number of patches.",
            "Section 2 (token mixing is an MLP over patches of fixed width D_S).",
            "reproduced" if ok == len(linear) else ("partly" if ok else "not reproduced"),
            "Mixer-B/16 at 448 px (4x the patches), time per image against 224 px: " +
            "; ".join(f"{label}: {cost:.2f}x ({cost / 4:.2f}x per patch"
                      + (f"; {wide:.2f}x with App. C's widened token mixing, D_S x 4)"
                         if wide else ")") for label, cost, wide in linear) + ".",
            "claims")
    else:
        add("linear", "Mixer's cost grows linearly with the number of patches.",
            "Section 2.", PENDING,
            "benchmarks/throughput.py --preset claims has not been recorded.", "claims")
    # 5. permutations
    m = {k: _runs(records, f"e3-mixer-{k}") for k in ("none", "patch_pixel", "global")}
    r = {k: _runs(records, f"e3-resnet-{k}") for k in ("none", "patch_pixel", "global")}
    if all(len(v) >= 2 for v in (*m.values(), *r.values())):
        mp, mg = group_effect(m["none"], m["patch_pixel"]), group_effect(m["none"], m["global"])
        rp, rg = group_effect(r["none"], r["patch_pixel"]), group_effect(r["none"], r["global"])
        checks = [abs(mp[0]) <= 2 * mp[1], rp[0] < -2 * rp[1], mg[0] < -2 * mg[1],
                  rg[0] < -2 * rg[1]]
        add("permutation", "Mixer is invariant to a fixed patch+pixel shuffle, a CNN is not; "
            "a global shuffle hurts both.", "Section 3.4, Figure 4 (ImageNet).",
            "reproduced" if all(checks) else ("partly" if any(checks) else "not reproduced"),
            f"Mixer: patch+pixel {mp[0]:+.1f} ± {mp[1]:.1f}, global {mg[0]:+.1f} ± "
            f"{mg[1]:.1f}; ResNet: patch+pixel {rp[0]:+.1f} ± {rp[1]:.1f}, global "
            f"{rg[0]:+.1f} ± {rg[1]:.1f} points (test top-1 against no shuffle).",
            "permutation")
    else:
        add("permutation", "Mixer is invariant to a fixed patch+pixel shuffle, a CNN is not; "
            "a global shuffle hurts both.", "Section 3.4, Figure 4.", PENDING,
            "E3 runs not all committed.", "permutation")
    # 6. token-mixing units
    up = records.get("e1-up-mixer")
    stats = (up or {}).get("token_mixing")
    if stats:
        first = stats["blocks"][0]
        local = first["neighbour_correlation"] > first["init_neighbour_correlation"] + 0.1
        add("units", "Token-mixing units of the first layers learn local detectors.",
            "Section 3.5, Figure 5.", "reproduced" if local else "not reproduced",
            f"First block of the E1 upstream Mixer: neighbour correlation "
            f"{first['neighbour_correlation']:+.2f} (fresh init "
            f"{first['init_neighbour_correlation']:+.2f}); energy within 1 patch of each "
            f"unit's peak {100 * first['local_energy']:.0f}% (init "
            f"{100 * first['init_local_energy']:.0f}%).", "token_mixing")
    else:
        add("units", "Token-mixing units of the first layers learn local detectors.",
            "Section 3.5, Figure 5.", PENDING, "E1 upstream run not committed.",
            "token_mixing")
    # 7. transfer
    ft, sc = _runs(records, "e1-ft-mixer"), _runs(records, "e1-scratch-mixer")
    if len(ft) >= 2 and len(sc) >= 2:
        d, se = group_effect(sc, ft)
        add("transfer", "Pre-training upstream, then fine-tuning with the paper's recipe, "
            "beats training on the downstream task alone.", "Sections 3-3.1.",
            "reproduced" if d > 2 * se else ("not reproduced" if d < -2 * se else "partly"),
            f"Mixer-T/4 on classes 5-9: fine-tuned {statistics.fmean(x['top1'] for x in ft):.1f}"
            f" vs from scratch {statistics.fmean(x['top1'] for x in sc):.1f} "
            f"({d:+.1f} ± {se:.1f} points).", "autopsy")
    else:
        add("transfer", "Pre-training upstream, then fine-tuning with the paper's recipe, "
            "beats training on the downstream task alone.", "Sections 3-3.1.", PENDING,
            "E1 runs not all committed.", "autopsy")
    # 8. higher resolution
    bd, rnd, lo = (_runs(records, f"e2-{k}") for k in ("ft64-blockdiag", "ft64-random",
                                                       "ft32"))
    if len(bd) >= 2 and len(rnd) >= 2 and len(lo) >= 2:
        d1, s1 = group_effect(rnd, bd)
        d2, s2 = group_effect(lo, bd)
        add("resolution", "Fine-tuning at a higher resolution with block-diagonal "
            "token-mixing initialisation works (App. C).", "Appendix C.",
            "reproduced" if d1 > 2 * s1 and d2 > -2 * s2 else
            ("partly" if d1 > -2 * s1 else "not reproduced"),
            f"64 px block-diagonal vs random token mixing {d1:+.1f} ± {s1:.1f}; vs 32 px "
            f"{d2:+.1f} ± {s2:.1f} points (CIFAR's images are 32 px: at 64 px they are "
            f"upsampled and carry no extra detail, so this tests App. C's initialisation, "
            f"not the gain from real detail).", "autopsy")
    else:
        add("resolution", "Fine-tuning at a higher resolution with block-diagonal "
            "token-mixing initialisation works (App. C).", "Appendix C.", PENDING,
            "E2 runs not all committed.", "autopsy")
    # 9. the reproduction's shortfall
    rows_a = autopsy(records)
    combined = next(x for x in rows_a if x["deviation"] == "all")
    if combined["effect_points"] is not None:
        d, se = combined["effect_points"], combined["se"]
        add("shortfall", "The published reproduction's 3-6 point shortfall comes from its "
            "departures from the recipe.", "Its report: five possible causes, none measured.",
            "reproduced" if d < -2 * se else "not reproduced",
            f"All its deviations together: {d:+.1f} ± {se:.1f} points against the official "
            f"recipe (E6, {combined['seeds']} seeds).", "autopsy")
    else:
        add("shortfall", "The published reproduction's 3-6 point shortfall comes from its "
            "departures from the recipe.", "Its report: five possible causes.", PENDING,
            "E6 runs not all committed.", "autopsy")
    return out


def table1_agreement() -> tuple[int, int]:
    """(variants whose head-less parameter count rounds to Table 1's figure, variants)."""
    import torch

    from mixer_lib.model import VARIANTS, create_model
    from mixer_lib.records import PAPER_PARAMS_M

    ok = 0
    for name in VARIANTS:
        with torch.device("meta"):
            model = create_model(name, num_classes=0, img_size=224)
        ok += round(sum(p.numel() for p in model.parameters()) / 1e6) == PAPER_PARAMS_M[name]
    return ok, len(VARIANTS)


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
