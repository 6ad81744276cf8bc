"""The autopsy of the published reproduction: each of its departures from the recipe (the
study's E6 runs), its effect on fine-tuned test top-1 against the official recipe (points,
mean over seeds) with a standard error, and which of the report's five suggested
explanations the measurements support. Significance: :mod:`mixer_lib.significance`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping

from mixer_lib.significance import loss, significant

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


def seed_runs(records: Mapping[str, dict], prefix: str) -> list[dict]:
    """The records of the runs ``<prefix>-s<seed>`` that exist, one per seed of :data:`SEEDS`."""
    return [records[f"{prefix}-s{s}"] for s in SEEDS if f"{prefix}-s{s}" in records]


def autopsy(records: Mapping[str, dict]) -> list[dict]:
    """Each deviation (and all together) against the official recipe (``e1-ft-mixer``)."""
    official = seed_runs(records, "e1-ft-mixer")
    rows = []
    for dev, what in DEVIATION_NAMES.items():
        runs = seed_runs(records, f"e6-{dev}")
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
    official = seed_runs(records or {}, "e1-ft-mixer")
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
                small = not significant(d, se) and abs(d) < 1.0
                out[name] = (f"{'not supported' if small else 'supported'} (the same run on "
                             f"{dev_a} and on {dev_b}: {ref['top1']:.2f} vs {here['top1']:.2f}"
                             f", {d:+.2f} ± {se:.2f} points)")
                continue
        if not devs:
            out[name] = "not tested here"
            continue
        have = [measured[d] for d in devs if d in measured]
        if any(loss(r["effect_points"], r["se"]) for r in have):
            out[name] = "supported"
        elif len(have) == len(devs):
            out[name] = "not supported"
        else:
            out[name] = PENDING
    return out


def reproduction_table() -> tuple[list[str], list[list]]:
    """The published reproduction's figures beside the paper's (ImageNet and Avg 5), with
    the gaps."""
    from mixer_lib.published import PAPER, REPRODUCTION_REPORT

    rows = []
    for (v, p), fig in REPRODUCTION_REPORT.items():
        paper = PAPER[v, p]
        rows.append([v, p, paper["imagenet1k"], fig["imagenet1k"],
                     f"{fig['imagenet1k'] - paper['imagenet1k']:+.2f}", paper["avg5"],
                     fig["avg5"], f"{fig['avg5'] - paper['avg5']:+.2f}"])
    return (["variant", "pre-training", "paper: ImageNet", "reproduction: ImageNet", "gap",
             "paper: Avg 5", "reproduction: Avg 5", "gap"], rows)


def misquote_notes() -> str:
    """Where the reproduction's own table misquotes the paper, and what that does to its gap."""
    from mixer_lib.published import PAPER, REPRODUCTION_MISQUOTE

    return "\n".join(
        f"Its own table quotes {quoted} as the paper's ImageNet figure for {key[0]} {key[1]}; "
        f"the paper's is {PAPER[key]['imagenet1k']} ({quoted} is the ImageNet-1k row), so its "
        f"gap there is larger than it reported." for key, quoted in REPRODUCTION_MISQUOTE.items())


def autopsy_table(table: list[dict]) -> tuple[list[str], list[list]]:
    """:func:`autopsy`'s rows as the chapter shows them."""
    return (["deviation", "what it does", "effect (points)", "standard error", "seeds",
             "status"],
            [[r["deviation"], r["description"],
              f"{r['effect_points']:+.2f}" if r["effect_points"] is not None else None,
              f"{r['se']:.2f}" if r["se"] is not None else None, r["seeds"], r["status"]]
             for r in table])


def _effect(r: dict) -> str:
    return "(pending)" if r["effect_points"] is None else \
        f"{r['effect_points']:+.1f} ± {r['se']:.1f}"


def autopsy_summary(table: list[dict]) -> dict[str, str]:
    """What the chapter's prose quotes: ``effect_all`` (all deviations together), ``costly``
    (each deviation that alone is a significant loss, described) and ``within`` (each whose
    effect is within two standard errors of zero)."""
    single = [r for r in table if r["deviation"] != "all" and r["effect_points"] is not None]
    costly = [r for r in single if loss(r["effect_points"], r["se"])]
    within = [r for r in single if not significant(r["effect_points"], r["se"])]
    combined = next(r for r in table if r["deviation"] == "all")
    return {"effect_all": _effect(combined),
            "costly": "; ".join(f"{r['description']} ({_effect(r)})" for r in costly) or "none",
            "within": ", ".join(f"{r['deviation']} ({_effect(r)})" for r in within) or "none"}
