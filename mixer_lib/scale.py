"""The scale study in miniature (paper Sections 3.2-3.3): its design and what its records say.

Design (the run definitions are built from it in :mod:`mixer_lib.study`): each model is
pre-trained from scratch on class-balanced subsets of CIFAR-10's classes 0-4 of
:data:`SIZES` images, for the same number of updates whatever the size (as the paper
pre-trains on 3-100 % of JFT-300M for 233-7 epochs), two seeds each:

- E7, data scaling: Mixer-T/4, ViT-T/4 and ResNet-S at every size;
- E8, model size against data: Mixer at three widths at the smallest and largest sizes;
- E9, regularisation: the smallest-data Mixer with the paper's ImageNet-1k regularisation.

Two numbers per run: upstream test top-1 (classes 0-4, all 5,000 test images) and the
few-shot probe on frozen features of the held-out classes 5-9 (:mod:`mixer_lib.fewshot`),
the paper's transfer metric. Group means and standard errors over seeds are
:func:`mixer_lib.autopsy.group_mean`'s; significance is :mod:`mixer_lib.significance`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import pairwise

from mixer_lib.autopsy import SEEDS, group_effect, group_mean

SIZES = (500, 2000, 10000)
# E7: model key (in run names) -> variant
DATA_MODELS = {"mixer": "Mixer-T/4", "vit": "ViT-T/4", "resnet": "ResNet-S"}
# E8: Mixer widths, smallest first; "mixer" is E7's Mixer-T/4
WIDTH_MODELS = {"mixer64": "Mixer-W64/4", "mixer": "Mixer-T/4", "mixer192": "Mixer-W192/4"}
# E9: the paper's ImageNet-1k regularisation (Table 4: RandAugment 2 layers magnitude 15,
# mixup 0.5, stochastic depth 0.1)
REGULARISED = {"randaugment": "2,15", "mixup_alpha": 0.5, "drop_path_rate": 0.1}
REG_MODEL = "mixer-reg"
METRICS = {"upstream": "upstream test top-1 (classes 0-4, %)",
           "5-shot": "5-shot probe top-1 (classes 5-9, %)",
           "10-shot": "10-shot probe top-1 (classes 5-9, %)"}
LABELS = {**DATA_MODELS, "mixer64": "Mixer-W64/4", "mixer192": "Mixer-W192/4",
          REG_MODEL: "Mixer-T/4 + regularisation"}


def width_pairs() -> list[tuple[str, str]]:
    """E8's comparisons: (narrower, wider) Mixer keys of neighbouring widths."""
    return list(pairwise(WIDTH_MODELS))


def run_name(model: str, size: int, seed: int) -> str:
    """The study run of ``model`` (a key of :data:`LABELS`) on ``size`` images."""
    experiment = ("e7" if model in DATA_MODELS else "e9" if model == REG_MODEL else "e8")
    return f"{experiment}-{model}-n{size}-s{seed}"


def _value(record: dict, metric: str) -> dict:
    """``record`` as :func:`group_mean` reads it: ``top1`` and ``num_eval`` of ``metric``."""
    if metric == "upstream":
        return {"top1": record["top1"], "num_eval": record["num_eval"]}
    probe = record["fewshot"]
    return {"top1": probe["shots"][metric.removesuffix("-shot")]["mean"],
            "num_eval": probe["num_test"]}


def seeds_of(records: Mapping[str, dict], model: str, size: int, metric: str) -> list[dict]:
    """The committed runs of ``model`` at ``size``, one per seed, as ``metric`` values."""
    return [_value(records[n], metric) for s in SEEDS
            if (n := run_name(model, size, s)) in records]


def point(records: Mapping[str, dict], model: str, size: int, metric: str
          ) -> tuple[float, float] | None:
    """Mean over seeds and its standard error, or None with fewer than two seeds."""
    runs = seeds_of(records, model, size, metric)
    return group_mean(runs) if len(runs) >= 2 else None


def change(records: Mapping[str, dict], a: tuple[str, int], b: tuple[str, int], metric: str
           ) -> tuple[float, float] | None:
    """``metric`` of (model, size) ``b`` minus that of ``a``, with its standard error; None
    while either has fewer than two seeds."""
    ra, rb = seeds_of(records, *a, metric), seeds_of(records, *b, metric)
    if len(ra) < 2 or len(rb) < 2:
        return None
    return group_effect(ra, rb)


def gain_with_data(records: Mapping[str, dict], model: str, metric: str
                   ) -> tuple[float, float] | None:
    """``model``'s ``metric`` on the largest subset minus that on the smallest."""
    return change(records, (model, SIZES[0]), (model, SIZES[-1]), metric)


def difference(x: tuple[float, float], y: tuple[float, float]) -> tuple[float, float]:
    """Effect ``x`` minus effect ``y``, standard errors combined."""
    return x[0] - y[0], math.hypot(x[1], y[1])


def curves(records: Mapping[str, dict], models: tuple[str, ...], metric: str
           ) -> dict[str, list[tuple[int, float, float]]]:
    """Per model, ``(size, mean, s.e.)`` at every size with two or more seeds committed."""
    out = {}
    for model in models:
        pts = [(n, *p) for n in SIZES if (p := point(records, model, n, metric))]
        if pts:
            out[model] = pts
    return out


def _cell(p: tuple[float, float] | None) -> str | None:
    return f"{p[0]:.1f} ± {p[1]:.1f}" if p else None


def signed(p: tuple[float, float] | None) -> str | None:
    """An effect and its standard error as ``+1.2 ± 0.3`` (None stays None)."""
    return f"{p[0]:+.1f} ± {p[1]:.1f}" if p else None


def scale_table(records: Mapping[str, dict], models: tuple[str, ...] = tuple(DATA_MODELS),
                metric: str = "5-shot") -> tuple[list[str], list[list]]:
    """One row per model: ``metric`` (mean ± s.e. over seeds) at each subset size, and the
    gain from the smallest to the largest."""
    rows = [[LABELS[m], *(_cell(point(records, m, n, metric)) for n in SIZES),
             signed(gain_with_data(records, m, metric))] for m in models]
    return (["model", *(f"{n:,} images" for n in SIZES),
             f"gain {SIZES[0]:,} -> {SIZES[-1]:,}"], rows)


def gap_table(records: Mapping[str, dict], metric: str = "5-shot"
              ) -> tuple[list[str], list[list]]:
    """Mixer-T/4 minus each other E7 model at each subset size (mean ± s.e.): the gaps whose
    change with data the paper describes."""
    rows = [[f"Mixer-T/4 - {LABELS[m]}",
             *(signed(change(records, (m, n), ("mixer", n), metric)) for n in SIZES)]
            for m in DATA_MODELS if m != "mixer"]
    return ["gap", *(f"{n:,} images" for n in SIZES)], rows


def width_table(records: Mapping[str, dict], metric: str = "upstream"
                ) -> tuple[list[str], list[list]]:
    """Each wider Mixer minus the next narrower one at the smallest and largest sizes."""
    rows = [[f"{LABELS[big]} - {LABELS[small]}",
             *(signed(change(records, (small, n), (big, n), metric)) for n in
               (SIZES[0], SIZES[-1]))] for small, big in width_pairs()]
    return ["larger minus smaller", f"{SIZES[0]:,} images", f"{SIZES[-1]:,} images"], rows


def regularisation_effect(records: Mapping[str, dict], metric: str = "upstream"
                          ) -> dict[str, tuple[float, float] | float | None]:
    """At the smallest size: regularised minus plain Mixer-T/4 (``effect``), ResNet-S minus
    plain Mixer-T/4 (``gap``), and the share of that gap the regularisation closes."""
    n = SIZES[0]
    effect = change(records, ("mixer", n), (REG_MODEL, n), metric)
    gap = change(records, ("mixer", n), ("resnet", n), metric)
    closed = effect[0] / gap[0] if effect and gap and gap[0] > 0 else None
    return {"effect": effect, "gap": gap, "closed": closed}


def design_table(img_size: int = 32, num_classes: int = 5) -> tuple[list[str], list[list]]:
    """The study's models: name, role, parameters (millions, with the 5-class head) and
    forward GFLOPs per 32 px image (PyTorch's FLOP counter; a multiply-add counts 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mixer_lib.baselines import BASELINES
    from mixer_lib.model import create_model

    roles = {"mixer": "E7, E8, E9", "vit": "E7", "resnet": "E7", "mixer64": "E8",
             "mixer192": "E8"}
    rows = []
    for key, role in roles.items():
        name = LABELS[key]
        model = (BASELINES[name](num_classes, img_size) if name in BASELINES else
                 create_model(name, num_classes=num_classes, img_size=img_size))
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model.eval()(torch.zeros(1, 3, img_size, img_size))
        rows.append([name, role, f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}",
                     f"{counter.get_total_flops() / 1e9:.3f}"])
    return ["model", "experiments", "parameters (M)", "GFLOPs / image"], rows


def committed(records: Mapping[str, dict], names: list[str]) -> dict[str, str]:
    """What the chapter says about its records: how many of ``names`` are committed, and
    where and when they were made (:func:`records.made_summary`)."""
    from mixer_lib.records import made_summary

    made = [records[n] for n in names if n in records]
    return {"done": str(len(made)), "total": str(len(names)), **made_summary(made)}


def design_facts(steps: int, batch_size: int, shots: tuple[int, ...], draws: int
                 ) -> dict[str, str]:
    """The design's numbers as the chapter quotes them (``scale_*`` glue names)."""
    images = steps * batch_size
    return {"scale_sizes": ", ".join(f"{n:,}" for n in SIZES),
            "scale_ratio": f"{SIZES[-1] // SIZES[0]}",
            "scale_updates": f"{steps:,}", "scale_batch": f"{batch_size}",
            "scale_images": f"{images:,}",
            "scale_epochs": " / ".join(f"{images / n:.1f}".removesuffix(".0") for n in SIZES),
            "scale_seeds": f"{len(SEEDS)}", "scale_shots": " and ".join(map(str, shots)),
            "scale_draws": f"{draws}",
            "scale_reg": (f"RandAugment {REGULARISED['randaugment']}, mixup "
                          f"{REGULARISED['mixup_alpha']}, stochastic depth "
                          f"{REGULARISED['drop_path_rate']}")}


def table3_rows() -> tuple[list[str], list[list]]:
    """The paper's Table 3 rows that E8 mirrors: Mixer-B/16 and L/16 ImageNet top-1 after
    pre-training on ImageNet-1k and on ImageNet-21k, and L/16 minus B/16."""
    from mixer_lib.published import PAPER

    rows = []
    for weights, label in (("imagenet1k", "ImageNet-1k"), ("imagenet21k", "ImageNet-21k")):
        b, big = (PAPER[v, weights]["imagenet1k"] for v in ("Mixer-B/16", "Mixer-L/16"))
        rows.append([label, f"{b:.2f}", f"{big:.2f}", f"{big - b:+.2f}"])
    return ["pre-trained on", "Mixer-B/16", "Mixer-L/16", "L/16 - B/16"], rows


def regularisation_table(records: Mapping[str, dict]) -> tuple[list[str], list[list]]:
    """At the smallest size: plain Mixer-T/4, regularised Mixer-T/4 and ResNet-S (mean ±
    s.e.), the regularisation's effect and the share of the gap to ResNet-S it closes, for
    upstream top-1 and the 5-shot probe."""
    n = SIZES[0]
    rows = []
    for metric in ("upstream", "5-shot"):
        eff = regularisation_effect(records, metric)
        if eff["closed"] is not None:
            closed = f"{100 * eff['closed']:.0f} %"
        else:  # no records yet (None), or no gap: the plain Mixer is not behind
            closed = "no gap: Mixer-T/4 is not behind" if eff["gap"] else None
        rows.append([METRICS[metric], *(_cell(point(records, m, n, metric))
                                        for m in ("mixer", REG_MODEL, "resnet")),
                     signed(eff["effect"]), closed])
    return [f"{n:,} images", "Mixer-T/4", LABELS[REG_MODEL], "ResNet-S",
            "regularisation effect", "share of the gap to ResNet-S closed"], rows
