"""The study's permutation experiment (E3, paper Section 3.4) read from its records: each
model's test top-1 under each input shuffle (mean over seeds, standard error), and the change
against no shuffle. The ledger's ``permutation`` rule reads the same groups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mixer_lib.autopsy import SEEDS, group_effect, group_mean, seed_runs
from mixer_lib.permute import PERMUTATIONS

MODELS = {"mixer": "Mixer-T/4", "resnet": "ResNet-S"}


@dataclass
class Invariance:
    """``rows``: the chapter's table; ``means``/``errors``: model name -> shuffle -> value,
    for the complete groups; ``changes``: ``e3_<model>_<shuffle>`` -> "±" text (or
    "(pending)")."""

    rows: list[list] = field(default_factory=list)
    means: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: dict[str, dict[str, float]] = field(default_factory=dict)
    changes: dict[str, str] = field(default_factory=dict)

    def table(self) -> tuple[list[str], list[list]]:
        return (["model", "input shuffle", "test top-1 (mean)", "change vs none", "runs"],
                self.rows)

    def complete(self) -> bool:
        """Every model has every shuffle with all seeds."""
        return len(self.means) == len(MODELS) and all(
            len(v) == len(PERMUTATIONS) for v in self.means.values())


def invariance(records: Mapping[str, dict]) -> Invariance:
    """E3 from the study's committed records (run names ``e3-<model>-<shuffle>-s<seed>``)."""
    out = Invariance()
    for model, name in MODELS.items():
        base = seed_runs(records, f"e3-{model}-none")
        for kind in PERMUTATIONS:
            runs = seed_runs(records, f"e3-{model}-{kind}")
            complete = len(runs) == len(SEEDS) == len(base)
            if kind != "none":
                out.changes[f"e3_{model}_{kind}"] = (
                    "{:+.1f} ± {:.1f}".format(*group_effect(base, runs)) if complete
                    else "(pending)")
            if not complete:
                out.rows.append([model, kind, None, None, "pending"])
                continue
            mean, se = group_mean(runs)
            out.means.setdefault(name, {})[kind] = mean
            out.errors.setdefault(name, {})[kind] = se
            change = "" if kind == "none" else "{:+.2f} ± {:.2f}".format(
                *group_effect(base, runs))
            out.rows.append([model, kind, f"{mean:.2f}", change, f"{len(runs)} seeds"])
    return out
