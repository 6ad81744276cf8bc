"""The scale study's analysis (mixer_lib.scale) and its three ledger rules, on synthetic
records: each verdict follows its stated rule, and a missing seed leaves it pending."""

from __future__ import annotations

import pytest

from mixer_lib import scale
from mixer_lib.claims import ledger

SMALL, LARGE = scale.SIZES[0], scale.SIZES[-1]


def record(upstream: float, five: float, ten: float | None = None) -> dict:
    return {"top1": upstream, "num_eval": 5000,
            "fewshot": {"num_test": 5000, "shots": {"5": {"mean": five},
                                                    "10": {"mean": ten or five + 3}}}}


def records(values: dict[tuple[str, int], tuple[float, float]], jitter: float = 0.3) -> dict:
    """Two seeds per (model, size), spread by +-``jitter`` around the given values."""
    out = {}
    for (model, size), (up, five) in values.items():
        for seed, sign in zip(scale.SEEDS, (-1, 1), strict=True):
            out[scale.run_name(model, size, seed)] = record(up + sign * jitter,
                                                            five + sign * jitter)
    return out


def verdicts(recs: dict) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in ledger(recs, None)}


def paper_like() -> dict:
    """Mixer gains most with data; wider Mixers lose with little data and win with a lot;
    regularisation helps the small-data Mixer."""
    v = {}
    for i, n in enumerate(scale.SIZES):
        v["mixer", n] = (55 + 10 * i, 40 + 10 * i)
        v["vit", n] = (57 + 5 * i, 42 + 5 * i)
        v["resnet", n] = (65 + 3 * i, 45 + 2 * i)
    for n, (narrow, wide) in ((SMALL, (57, 53)), (LARGE, (70, 80))):
        v["mixer64", n], v["mixer192", n] = (narrow, 45), (wide, 55)
    v[scale.REG_MODEL, SMALL] = (60, 43)
    return v


def test_names_match_the_study_definitions():
    from mixer_lib.study import scale_runs

    defined = {r.name for r in scale_runs()}
    wanted = {scale.run_name(m, n, s) for s in scale.SEEDS for m in scale.DATA_MODELS
              for n in scale.SIZES}
    wanted |= {scale.run_name(m, n, s) for s in scale.SEEDS for m in ("mixer64", "mixer192")
               for n in (SMALL, LARGE)}
    wanted |= {scale.run_name(scale.REG_MODEL, SMALL, s) for s in scale.SEEDS}
    assert defined == wanted


def test_paper_like_records_reproduce_all_three_claims():
    got = verdicts(records(paper_like()))
    assert got["data-scaling"] == got["size-vs-data"] == got["regularisation"] == "reproduced"


def test_data_scaling_counts_resnet_and_vit_separately():
    v = paper_like()
    for i, n in enumerate(scale.SIZES):
        v["vit", n] = (57 + 10 * i, 42 + 10 * i)  # ViT gains as much as Mixer
    assert verdicts(records(v))["data-scaling"] == "partly"
    for i, n in enumerate(scale.SIZES):
        v["resnet", n] = (65 + 12 * i, 45 + 12 * i)
    assert verdicts(records(v))["data-scaling"] == "not reproduced"
    # a difference inside the noise is not a gain: huge seed spread
    assert verdicts(records(paper_like(), jitter=8.0))["data-scaling"] == "not reproduced"


def test_size_vs_data_needs_the_sign_to_flip_in_both_pairs():
    v = paper_like()
    v["mixer192", SMALL] = (62, 47)  # the widest already wins with little data
    assert verdicts(records(v))["size-vs-data"] == "partly"
    v["mixer64", SMALL] = (50, 40)
    assert verdicts(records(v))["size-vs-data"] == "not reproduced"


def test_regularisation_rule_and_the_share_of_the_gap_it_closes():
    v = paper_like()
    eff = scale.regularisation_effect(records(v))
    assert eff["effect"][0] == pytest.approx(5.0) and eff["gap"][0] == pytest.approx(10.0)
    assert eff["closed"] == pytest.approx(0.5)
    v[scale.REG_MODEL, SMALL] = (55, 46)  # only the probe improves
    assert verdicts(records(v))["regularisation"] == "partly"
    v[scale.REG_MODEL, SMALL] = (54, 39)
    assert verdicts(records(v))["regularisation"] == "not reproduced"


def test_a_missing_seed_leaves_each_claim_pending():
    full = records(paper_like())
    for claim, run in (("data-scaling", scale.run_name("vit", LARGE, 1)),
                       ("size-vs-data", scale.run_name("mixer192", LARGE, 0)),
                       ("regularisation", scale.run_name(scale.REG_MODEL, SMALL, 1))):
        partial = {k: v for k, v in full.items() if k != run}
        assert verdicts(partial)[claim] == "pending", claim


def test_tables_show_mean_and_error_per_size_and_gains():
    recs = records(paper_like())
    header, rows = scale.scale_table(recs, metric="5-shot")
    assert header[1:4] == [f"{n:,} images" for n in scale.SIZES]
    mixer = next(r for r in rows if r[0] == "Mixer-T/4")
    assert mixer[1].startswith("40.0 ± ") and mixer[4].startswith("+20.0 ± ")
    _, gaps = scale.gap_table(recs)
    assert gaps[0][0] == "Mixer-T/4 - ViT-T/4" and gaps[0][1].startswith("-2.0 ± ")
    _, widths = scale.width_table(recs)
    assert widths[1][0] == "Mixer-W192/4 - Mixer-T/4" and widths[1][1].startswith("-2.0")
    _, reg = scale.regularisation_table(recs)
    assert reg[0][1:4] == ["55.0 ± 0.5", "60.0 ± 0.5", "65.0 ± 0.5"]  # binomial floor
    assert reg[0][4].startswith("+5.0 ± ") and reg[0][5] == "50 %"
    v = paper_like()
    v["resnet", SMALL] = (54, 30)  # the ResNet below the Mixer on the probe: nothing to close
    _, reg = scale.regularisation_table(records(v))
    assert reg[1][5] == "no gap: Mixer-T/4 is not behind"
    _, empty = scale.regularisation_table({})
    assert empty[0][5] is None
    header, t3 = scale.table3_rows()
    assert t3 == [["ImageNet-1k", "76.44", "71.76", "-4.68"],
                  ["ImageNet-21k", "80.64", "82.89", "+2.25"]]
    curves = scale.curves(recs, tuple(scale.DATA_MODELS), "10-shot")
    assert [n for n, *_ in curves["mixer"]] == list(scale.SIZES)
    assert curves["mixer"][0][1] == pytest.approx(43.0)
    assert scale.curves({}, ("mixer",), "upstream") == {}


def test_scale_figure_draws_one_line_per_model_with_error_bars():
    import matplotlib

    matplotlib.use("Agg")
    from mixer_lib.plots import scale_curves

    fig = scale_curves(records(paper_like()), tuple(scale.DATA_MODELS))
    axes = fig.axes
    assert len(axes) == 2 and axes[0].get_xscale() == "log"
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == [
        "Mixer-T/4", "ViT-T/4", "ResNet-S"]
    assert len(axes[0].containers) == 3  # one errorbar container per model
    empty = scale_curves({}, ("mixer",), ("upstream",))
    assert "pending" in empty.axes[0].texts[0].get_text()
