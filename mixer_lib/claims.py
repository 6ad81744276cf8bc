"""The claims ledger: each claim of the paper (:data:`CLAIMS`, its sentence written once)
with the paper's evidence, this project's and a verdict computed from committed records by
the claim's stated rule (its docstring, printed by the book's Claims chapter).

Every claim gets one of :data:`VERDICTS`, or ``pending`` while the study records it needs are
not committed yet (the study runs in pieces). The autopsy of the published reproduction is
:mod:`mixer_lib.autopsy`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mixer_lib import scale
from mixer_lib.autopsy import PENDING, autopsy, group_effect, seed_runs
from mixer_lib.published import PAPER, PAPER_THROUGHPUT
from mixer_lib.significance import gain, loss, significant
from mixer_lib.throughputs import VIT_PEERS, Measurement, current, measurements

VERDICTS = ("reproduced", "partly", "not reproduced", "not testable here")


def _by_count(ok: int, n: int) -> str:
    """"reproduced" when all ``n`` checks hold, "partly" when ``ok`` of them do, else "not
    reproduced"."""
    return "reproduced" if ok == n else ("partly" if ok else "not reproduced")


def _all_some_none(checks: list[bool]) -> str:
    """:func:`_by_count` of a list of checks."""
    return _by_count(sum(checks), len(checks))


# ------------------------------------------------------------------------ the claims registry

@dataclass(frozen=True)
class Evidence:
    """What the rules read: the study's records by run name, the throughput measurements
    (:func:`measurements`), the paper profile's protocol records, and Table 1's agreement
    (variants whose head-less count rounds to Table 1's, variants)."""

    records: Mapping[str, dict]
    runs: list[Measurement]
    protocols: list[dict]
    table1_ok: tuple[int, int] | None


Finding = tuple[str, str]  # (verdict, this project's evidence in one sentence)


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: its sentence (written here once), where the paper supports it,
    the chapter that shows ours, what is missing while it cannot be judged, and its rule (a
    verdict and the evidence from :class:`Evidence`, or None while the evidence is missing)."""

    id: str
    sentence: str
    paper: str
    chapter: str
    missing: str
    rule: Callable[[Evidence], Finding | None]
    missing_verdict: str = PENDING


def _table1(ev: Evidence) -> Finding | None:
    """All variants' counts round to Table 1's: reproduced; some: partly."""
    if ev.table1_ok is None:
        return None
    ok, n = ev.table1_ok
    return (_by_count(ok, n),
            f"{ok} of {n} head-less counts of the built models round to Table 1's figures.")


def _accuracy(ev: Evidence) -> Finding | None:
    """ImageNet top-1 of the paper profile within 1 point of Table 3: reproduced; within 3:
    partly; else not reproduced."""
    real = [p for p in ev.protocols if not p.get("dry_run") and p["dataset"] == "imagenet1k"
            and p.get("test_top1_mean") is not None]
    if not real:
        return None
    p = real[0]
    paper = PAPER.get((p["variant"], p["weights"]), {}).get("imagenet1k")
    gap = p["test_top1_mean"] - paper if paper else None
    verdict = (PENDING if gap is None else "reproduced" if abs(gap) <= 1 else
               "partly" if abs(gap) <= 3 else "not reproduced")
    return verdict, (f"{p['variant']} ({p['weights']}): ImageNet top-1 "
                     f"{p['test_top1_mean']:.2f} (paper {paper}).")


def _vit_pairs() -> list[tuple[str, str, str]]:
    return [(vit.replace("ViT", "Mixer"), timm, vit) for vit, timm in VIT_PEERS.items()]


def _paper_throughput_ratios() -> str:
    return "Table 3: " + ", ".join(
        f"{m} / {vit} {PAPER_THROUGHPUT[m] / PAPER_THROUGHPUT[vit]:.2f}x"
        for m, _, vit in _vit_pairs()) + " (TPU-v3)."


def _throughput(ev: Evidence) -> Finding | None:
    """Mixer faster than ViT of the same size in every current measurement (device, dtype,
    mode; one made with an earlier form of our model is replaced by those of a later form on
    the same device, dtype and mode): reproduced; in some: partly; in none: not
    reproduced."""
    ratios = [(run.title, vit, run.ratio(m, v)) for m, v, vit in _vit_pairs()
              for run in current(ev.runs, (m, v))[0]]
    if not ratios:
        return None
    return (_all_some_none([r > 1 for _, _, r in ratios]),
            "Inference, Mixer / ViT of the same size, measured here: " + "; ".join(
                f"{label}: " + ", ".join(f"{vit} {r:.2f}x" for lab, vit, r in ratios
                                         if lab == label)
                for label in dict.fromkeys(lab for lab, _, _ in ratios)) + ".")


def _linear(ev: Evidence) -> Finding | None:
    """Time per image at 448 px (4x the patches) within 0.75-1.33 of 4x that at 224 px in
    every current measurement (as for throughput): reproduced; in some: partly."""
    linear = []
    for run in current(ev.runs, ("Mixer-B/16", "Mixer-B/16@img_size=448"))[0]:
        wide = "Mixer-B/16@img_size=448,tokens_mlp_dim=1536"
        linear.append((run.title, run.ratio("Mixer-B/16", "Mixer-B/16@img_size=448"),
                       run.ratio("Mixer-B/16", wide) if wide in run.rows else None))
    if not linear:
        return None
    return (_all_some_none([0.75 <= cost / 4.0 <= 1.33 for _, cost, _ in linear]),
            "Mixer-B/16 at 448 px (4x the patches), time per image against 224 px: " +
            "; ".join(f"{label}: {cost:.2f}x ({cost / 4:.2f}x per patch"
                      + (f"; {wide:.2f}x with App. C's widened token mixing, D_S x 4)"
                         if wide else ")") for label, cost, wide in linear) + ".")


def _permutation(ev: Evidence) -> Finding | None:
    """Mixer's patch+pixel shuffle effect not significant, ResNet's a significant loss, the
    global shuffle a significant loss for both: all four reproduced; some: partly."""
    m = {k: seed_runs(ev.records, f"e3-mixer-{k}") for k in ("none", "patch_pixel", "global")}
    r = {k: seed_runs(ev.records, f"e3-resnet-{k}") for k in ("none", "patch_pixel", "global")}
    if not all(len(v) >= 2 for v in (*m.values(), *r.values())):
        return None
    mp, mg = group_effect(m["none"], m["patch_pixel"]), group_effect(m["none"], m["global"])
    rp, rg = group_effect(r["none"], r["patch_pixel"]), group_effect(r["none"], r["global"])
    return (_all_some_none([not significant(*mp), loss(*rp), loss(*mg), loss(*rg)]),
            f"Mixer: patch+pixel {mp[0]:+.1f} ± {mp[1]:.1f}, global {mg[0]:+.1f} ± "
            f"{mg[1]:.1f}; ResNet: patch+pixel {rp[0]:+.1f} ± {rp[1]:.1f}, global "
            f"{rg[0]:+.1f} ± {rg[1]:.1f} points (test top-1 against no shuffle).")


def _units(ev: Evidence) -> Finding | None:
    """The first block's neighbour correlation above its fresh initialisation's by > 0.1."""
    stats = (ev.records.get("e1-up-mixer") or {}).get("token_mixing")
    if not stats:
        return None
    first = stats["blocks"][0]
    local = first["neighbour_correlation"] > first["init_neighbour_correlation"] + 0.1
    return ("reproduced" if local else "not reproduced",
            f"First block of the E1 upstream Mixer: neighbour correlation "
            f"{first['neighbour_correlation']:+.2f} (fresh init "
            f"{first['init_neighbour_correlation']:+.2f}); energy within 1 patch of each "
            f"unit's peak {100 * first['local_energy']:.0f}% (init "
            f"{100 * first['init_local_energy']:.0f}%).")


def _transfer(ev: Evidence) -> Finding | None:
    """Fine-tuned minus from scratch a significant gain: reproduced; a significant loss: not
    reproduced; else partly."""
    ft, sc = seed_runs(ev.records, "e1-ft-mixer"), seed_runs(ev.records, "e1-scratch-mixer")
    if len(ft) < 2 or len(sc) < 2:
        return None
    d, se = group_effect(sc, ft)
    return ("reproduced" if gain(d, se) else ("not reproduced" if loss(d, se) else "partly"),
            f"Mixer-T/4 on classes 5-9: fine-tuned {statistics.fmean(x['top1'] for x in ft):.1f}"
            f" vs from scratch {statistics.fmean(x['top1'] for x in sc):.1f} "
            f"({d:+.1f} ± {se:.1f} points).")


def _resolution(ev: Evidence) -> Finding | None:
    """Block-diagonal beats random token mixing at 64 px significantly and is not a
    significant loss against 32 px: reproduced; not a significant loss against random:
    partly."""
    bd, rnd, lo = (seed_runs(ev.records, f"e2-{k}") for k in ("ft64-blockdiag", "ft64-random",
                                                          "ft32"))
    if len(bd) < 2 or len(rnd) < 2 or len(lo) < 2:
        return None
    d1, s1 = group_effect(rnd, bd)
    d2, s2 = group_effect(lo, bd)
    return ("reproduced" if gain(d1, s1) and not loss(d2, s2) else
            ("partly" if not loss(d1, s1) else "not reproduced"),
            f"64 px block-diagonal vs random token mixing {d1:+.1f} ± {s1:.1f}; vs 32 px "
            f"{d2:+.1f} ± {s2:.1f} points (CIFAR's images are 32 px: at 64 px they are "
            f"upsampled and carry no extra detail, so this tests App. C's initialisation, "
            f"not the gain from real detail).")


def _shortfall(ev: Evidence) -> Finding | None:
    """All the reproduction's deviations together a significant loss: reproduced."""
    combined = next(x for x in autopsy(ev.records) if x["deviation"] == "all")
    if combined["effect_points"] is None:
        return None
    d, se = combined["effect_points"], combined["se"]
    return ("reproduced" if loss(d, se) else "not reproduced",
            f"All its deviations together: {d:+.1f} ± {se:.1f} points against the official "
            f"recipe (E6, {combined['seeds']} seeds).")


def _data_scaling(ev: Evidence) -> Finding | None:
    """On the 5-shot probe (the paper's metric), Mixer-T/4's gain from the smallest to the
    largest subset minus ResNet-S's gain, and minus ViT-T/4's: both significant gains:
    reproduced; one: partly; none: not reproduced."""
    gains = {m: scale.gain_with_data(ev.records, m, "5-shot") for m in scale.DATA_MODELS}
    if None in gains.values():
        return None
    over = {m: scale.difference(gains["mixer"], gains[m]) for m in ("resnet", "vit")}
    return (_all_some_none([gain(*d) for d in over.values()]),
            f"5-shot probe on classes 5-9, gain from {scale.SIZES[0]:,} to "
            f"{scale.SIZES[-1]:,} pre-training images: " + ", ".join(
                f"{scale.LABELS[m]} {g[0]:+.1f} ± {g[1]:.1f}" for m, g in gains.items())
            + " points; Mixer's gain minus ResNet's " + _pm(over["resnet"])
            + ", minus ViT's " + _pm(over["vit"]) + ".")


_pm = scale.signed  # "+1.2 ± 0.3"


def _size_vs_data(ev: Evidence) -> Finding | None:
    """Upstream test top-1 (Table 3 scores models on the data they were trained on), each
    wider Mixer minus the next narrower one: below zero on the smallest subset, above on the
    largest, and the change between them a significant gain. Both pairs: reproduced; one:
    partly; none: not reproduced."""
    small, large = scale.SIZES[0], scale.SIZES[-1]
    found = []
    for narrow, wide in scale.width_pairs():
        lo = scale.change(ev.records, (narrow, small), (wide, small), "upstream")
        hi = scale.change(ev.records, (narrow, large), (wide, large), "upstream")
        if lo is None or hi is None:
            return None
        found.append((wide, narrow, lo, hi))
    checks = [lo[0] < 0 < hi[0] and gain(*scale.difference(hi, lo)) for *_, lo, hi in found]
    return (_all_some_none(checks),
            "Upstream test top-1, wider minus narrower Mixer on "
            f"{small:,} / {large:,} images: " + "; ".join(
                f"{scale.LABELS[w]} - {scale.LABELS[n]} {_pm(lo)} / {_pm(hi)}"
                for w, n, lo, hi in found) + " points.")


def _regularisation(ev: Evidence) -> Finding | None:
    """On the smallest subset, the paper's ImageNet-1k regularisation against none: a
    significant gain in upstream test top-1: reproduced; in the 5-shot probe only: partly;
    neither: not reproduced."""
    up = scale.regularisation_effect(ev.records, "upstream")
    probe = scale.regularisation_effect(ev.records, "5-shot")
    if up["effect"] is None or probe["effect"] is None:
        return None
    verdict = ("reproduced" if gain(*up["effect"]) else
               "partly" if gain(*probe["effect"]) else "not reproduced")
    closed = (f"; it closes {100 * up['closed']:.0f} % of the gap to ResNet-S "
              f"({_pm(up['gap'])})" if up["closed"] is not None else "")
    return (verdict, f"Mixer-T/4 on {scale.SIZES[0]:,} images with RandAugment 2,15, mixup "
            f"0.5 and stochastic depth 0.1 against none: upstream top-1 "
            f"{_pm(up['effect'])}, 5-shot probe {_pm(probe['effect'])} points{closed}.")


_NO_E5 = "benchmarks/throughput.py --preset claims has not been recorded."
CLAIMS: tuple[Claim, ...] = (
    Claim("table1", "The seven variants have the parameter counts of Table 1.",
          "Table 1 (millions, without the head).", "architecture",
          "Table 1 was not checked.", _table1),
    Claim("accuracy", "Pre-trained at scale, Mixer reaches accuracy competitive with CNNs "
          "and ViT (ImageNet top-1 after fine-tuning).", "Tables 2 and 3.", "results",
          "Needs the released checkpoints, ImageNet and a GPU: the `paper` profile runs it "
          "(its dry run checks the code path).", _accuracy,
          missing_verdict="not testable here"),
    Claim("throughput", "Mixer has higher throughput than ViT of the same size.",
          _paper_throughput_ratios(), "claims", _NO_E5, _throughput),
    Claim("linear", "Mixer's cost grows linearly with the number of patches.",
          "Section 2 (token mixing is an MLP over patches of fixed width D_S).", "claims",
          _NO_E5, _linear),
    Claim("permutation", "Mixer is invariant to a fixed patch+pixel shuffle, a CNN is not; "
          "a global shuffle hurts both.", "Section 3.4, Figure 4 (ImageNet).", "permutation",
          "E3 runs not all committed.", _permutation),
    Claim("units", "Token-mixing units of the first layers learn local detectors.",
          "Section 3.5, Figure 5.", "token_mixing", "E1 upstream run not committed.",
          _units),
    Claim("transfer", "Pre-training upstream, then fine-tuning with the paper's recipe, "
          "beats training on the downstream task alone.", "Sections 3-3.1.", "autopsy",
          "E1 runs not all committed.", _transfer),
    Claim("resolution", "Fine-tuning at a higher resolution with block-diagonal "
          "token-mixing initialisation works (App. C).", "Appendix C.", "autopsy",
          "E2 runs not all committed.", _resolution),
    Claim("data-scaling", "Mixer improves more with more pre-training data than a ResNet, "
          "or even ViT.", "Section 3.3, Figure 2 (right): linear 5-shot ImageNet after "
          "pre-training on 3-100 % of JFT-300M (plotted only).", "scale",
          "E7 runs not all committed.", _data_scaling),
    Claim("size-vs-data", "A larger Mixer pays off only with enough data: below a smaller "
          "one after little data, above it after a lot.", "Table 3: Mixer-L/16 "
          f"{PAPER['Mixer-L/16', 'imagenet1k']['imagenet1k']} vs B/16 "
          f"{PAPER['Mixer-B/16', 'imagenet1k']['imagenet1k']} after ImageNet-1k, "
          f"{PAPER['Mixer-L/16', 'imagenet21k']['imagenet1k']} vs "
          f"{PAPER['Mixer-B/16', 'imagenet21k']['imagenet1k']} after ImageNet-21k.", "scale",
          "E7 and E8 runs not all committed.", _size_vs_data),
    Claim("regularisation", "Without enough data Mixer overfits, and regularisation is "
          "necessary.", "Section 3.1 (ImageNet-21k pre-training); Table 4's ImageNet-1k "
          "settings.", "scale", "E7 and E9 runs not all committed.", _regularisation),
    Claim("shortfall", "The published reproduction's 3-6 point shortfall comes from its "
          "departures from the recipe.", "Its report: five possible causes, none measured.",
          "autopsy", "E6 runs not all committed.", _shortfall),
)


def ledger(records: Mapping[str, dict], benches: list[dict] | None,
           protocols: list[dict] | None = None, table1_ok: tuple[int, int] | None = None
           ) -> list[dict]:
    """Every claim of :data:`CLAIMS` with the paper's evidence, ours and a verdict by its
    rule (each rule's docstring states it), or its ``missing_verdict`` and what is missing.

    ``records``: the study's committed records by run name; ``benches``: the throughput
    records (:func:`mixer_lib.throughputs.throughput_benchmarks`); ``protocols``: protocol
    records of the paper profile; ``table1_ok``: (variants whose head-less count rounds to
    Table 1's, variants).
    """
    ev = Evidence(records, measurements(benches or []), protocols or [], table1_ok)
    out = []
    for claim in CLAIMS:
        found = claim.rule(ev)
        verdict, evidence = found if found else (claim.missing_verdict, claim.missing)
        out.append({"id": claim.id, "claim": claim.sentence, "paper_evidence": claim.paper,
                    "verdict": verdict, "evidence": evidence, "chapter": claim.chapter})
    return out


LEDGER_COLUMNS = {"claim": "claim", "paper_evidence": "paper's evidence",
                  "evidence": "this project's evidence", "verdict": "verdict",
                  "chapter": "chapter"}


def ledger_rows(claims: list[dict], fields: tuple[str, ...] = tuple(LEDGER_COLUMNS),
                ) -> tuple[list[str], list[list[str]]]:
    """The ledger as a table: the header and one row per claim, with ``fields`` (keys of
    :data:`LEDGER_COLUMNS`) as columns."""
    return [LEDGER_COLUMNS[f] for f in fields], [[c[f] for f in fields] for c in claims]


def rule_rows() -> tuple[list[str], list[list[str]]]:
    """Each claim with its rule as stated (the rule function's docstring), for the book."""
    return (["claim", "rule"],
            [[c.sentence, " ".join((c.rule.__doc__ or "").split())] for c in CLAIMS])


def chapter_claims(claims: list[dict], chapter: str) -> list[dict]:
    """The ledger's rows whose evidence ``chapter`` shows (its closing verdicts)."""
    return [c for c in claims if c["chapter"] == chapter]


def table1_agreement() -> tuple[int, int]:
    """(variants whose head-less parameter count rounds to Table 1's figure, variants)."""
    import torch

    from mixer_lib.model import VARIANTS, create_model
    from mixer_lib.published import PAPER_PARAMS_M

    ok = 0
    for name in VARIANTS:
        with torch.device("meta"):
            model = create_model(name, num_classes=0, img_size=224)
        ok += round(sum(p.numel() for p in model.parameters()) / 1e6) == PAPER_PARAMS_M[name]
    return ok, len(VARIANTS)
