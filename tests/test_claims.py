"""Claims ledger and autopsy: verdicts follow the stated rules on synthetic records; the
locality statistic of token-mixing units."""

from __future__ import annotations

import pytest
import torch

from mixer_lib.analysis import local_energy, token_mixing_stats
from mixer_lib.autopsy import autopsy, explanation_support, group_effect, group_mean
from mixer_lib.claims import VERDICTS, ledger
from mixer_lib.model import create_model
from mixer_lib.study import DEVIATIONS, study_runs
from mixer_lib.throughputs import measurements, throughput_table
from tests.conftest import bench_record


def rec(top1: float, n: int = 5000) -> dict:
    return {"top1": top1, "num_eval": n}


def test_group_effect_uses_seed_spread_with_a_binomial_floor():
    d, se = group_effect([rec(80.0), rec(82.0)], [rec(70.0), rec(72.0)])
    assert d == pytest.approx(-10.0)
    assert se == pytest.approx((2.0 / 2 + 2.0 / 2) ** 0.5)  # variance 2 per group, 2 seeds
    d, se = group_effect([rec(50.0), rec(50.0)], [rec(50.0), rec(50.0)])
    assert d == 0 and se == pytest.approx((2 * 50 * 50 / 5000 / 2) ** 0.5)  # floor
    mean, se1 = group_mean([rec(80.0), rec(82.0)])
    assert mean == pytest.approx(81.0) and se1 == pytest.approx(1.0)


def full_records(official=80.0, deviation=75.0) -> dict:
    out = {}
    for s, jitter in ((0, -0.2), (1, 0.2)):
        out[f"e1-ft-mixer-s{s}"] = rec(official + jitter)
        out[f"e1-scratch-mixer-s{s}"] = rec(60 + jitter)
        for dev in DEVIATIONS:
            out[f"e6-{dev}-s{s}"] = rec((deviation if dev in ("batch64", "all") else official)
                                        + jitter)
        for k, v in (("ft64-blockdiag", 83), ("ft64-random", 78), ("ft32", 80)):
            out[f"e2-{k}-s{s}"] = rec(v + jitter)
        for k, (m, r) in {"none": (50, 60), "patch_pixel": (50, 45), "global": (40, 35)}.items():
            out[f"e3-mixer-{k}-s{s}"] = rec(m + jitter)
            out[f"e3-resnet-{k}-s{s}"] = rec(r + jitter)
    return out


def test_autopsy_and_explanations():
    rows = autopsy(full_records())
    by = {r["deviation"]: r for r in rows}
    assert set(by) == set(DEVIATIONS)
    assert by["batch64"]["effect_points"] == pytest.approx(-5.0) and by["batch64"]["seeds"] == 2
    assert by["no-flip"]["effect_points"] == pytest.approx(0.0)
    support = explanation_support(rows, full_records())
    assert support["randomness"].startswith("not supported (seed-to-seed spread 0.28")
    assert support["fine-tuning settings"] == "supported"
    assert support["implementation details"] == "not supported"
    assert support["hardware"] == "not tested here"
    pending = autopsy({})
    assert all(r["status"] == "pending" and r["effect_points"] is None for r in pending)


def test_throughput_verdict_counts_every_measurement_and_never_mixes_them():
    cpu = bench_record("cpu (x86_64, 2 cores)", "fp32", {
        "Mixer-B/16": 10.0, "timm:vit_base_patch16_224": 7.0, "Mixer-B/16@img_size=448": 2.5})
    gpu = bench_record("NVIDIA H200", "fp32", {
        "Mixer-B/16": 100.0, "timm:vit_base_patch16_224": 80.0,
        "Mixer-B/16@img_size=448": 10.0}, preset="claims-gpu")
    gpu["rows"] += bench_record("NVIDIA H200", "bf16", {
        "Mixer-B/16": 300.0, "timm:vit_base_patch16_224": 450.0,
        "Mixer-B/16@img_size=448": 75.0}, preset="claims-gpu")["rows"]
    runs = measurements([cpu, gpu])
    assert [m.label for m in runs] == ["cpu fp32 eager", "H200 fp32 eager", "H200 bf16 eager"]
    again = bench_record("NVIDIA H200", "bf16", {"Mixer-B/16": 1.0}, preset="other")
    assert measurements([gpu, again])[-1].label == "H200 bf16 eager [other]"
    later = dict(again, environment=dict(again["environment"], date="2026-11-29T10:00:00"))
    assert [m.label for m in measurements([gpu, again, later, later])][-3:] == [
        "H200 bf16 eager [other]", "H200 bf16 eager [other, 2026-11-29T10:00]",
        "H200 bf16 eager [other, 2026-11-29T10:00, 2]"]  # never one label for two records
    claims = {c["id"]: c for c in ledger({}, [cpu, gpu])}
    assert claims["throughput"]["verdict"] == "partly"  # slower than ViT in bf16 only
    assert "H200 bf16 eager: ViT-B/16 0.67x" in claims["throughput"]["evidence"]
    assert {c["id"]: c for c in ledger({}, [cpu])}["throughput"]["verdict"] == "reproduced"
    # 4x the patches: 4x (cpu), 10x (gpu fp32: not linear), 4x (gpu bf16)
    assert claims["linear"]["verdict"] == "partly"
    assert "10.00x (2.50x per patch)" in claims["linear"]["evidence"]
    headers, rows = throughput_table([cpu, gpu])
    assert headers[3:6] == [m.label for m in runs] and headers[-1] == "paper (TPU-v3)"
    vit = next(r for r in rows if r[0] == "ViT-B/16")
    assert vit[3:] == ["0.70", "0.80", "1.50", "0.62"]  # paper: 861 / 1384
    big = rows[2]  # Mixer-B/16@img_size=448: the name without the option, no paper figure
    assert big[0] == "Mixer-B/16" and big[-1] == "-"
    slow = bench_record("cpu (x86_64, 2 cores)", "fp32", {
        "Mixer-B/16": 5.0, "timm:vit_base_patch16_224": 7.0})
    assert {c["id"]: c for c in ledger({}, [slow])}["throughput"]["verdict"] == \
        "not reproduced"
    assert {c["id"]: c for c in ledger({}, [])}["throughput"]["verdict"] == "pending"


def test_hardware_explanation_from_the_same_run_on_two_devices():
    rows = autopsy(full_records())
    cpu = {"e1-up-mixer": {"top1": 74.36, "num_eval": 5000,
                           "environment": {"device": "cpu (x86_64, 2 cores)"}}}
    here = dict(full_records(), **{"e1-up-mixer": {
        "top1": 74.58, "num_eval": 5000, "environment": {"device": "NVIDIA H200"}}})
    text = explanation_support(rows, here, cpu)["hardware"]
    assert text.startswith("not supported (the same run on cpu and on NVIDIA H200: 74.36 vs "
                           "74.58, +0.22 ± 0.87")
    here["e1-up-mixer"] = dict(here["e1-up-mixer"], top1=78.0)
    assert explanation_support(rows, here, cpu)["hardware"].startswith("supported")


def test_ledger_verdicts_follow_the_rules():
    bench = bench_record("cpu (x86_64, 2 cores)", "fp32", {
        "Mixer-B/16": 10.0, "timm:vit_base_patch16_224": 7.0, "Mixer-B/16@img_size=448": 2.4,
        "Mixer-B/16@img_size=448,tokens_mlp_dim=1536": 2.0})
    from tests.test_scale import paper_like
    from tests.test_scale import records as scale_records

    records = full_records() | scale_records(paper_like())
    records["e1-up-mixer"] = {"token_mixing": {"blocks": [{
        "neighbour_correlation": 0.5, "init_neighbour_correlation": 0.0,
        "local_energy": 0.6, "init_local_energy": 0.15}]}}
    claims = {c["id"]: c for c in ledger(records, [bench], [], (7, 7))}
    assert len(claims) >= 9
    assert all(c["verdict"] in VERDICTS for c in claims.values())
    assert claims["table1"]["verdict"] == "reproduced"
    assert claims["accuracy"]["verdict"] == "not testable here"
    assert claims["throughput"]["verdict"] == "reproduced"
    assert claims["linear"]["verdict"] == "reproduced"  # 10/2.4 = 4.2x for 4x patches
    assert claims["permutation"]["verdict"] == "reproduced"
    assert claims["transfer"]["verdict"] == "reproduced"
    assert claims["resolution"]["verdict"] == "reproduced"
    assert claims["shortfall"]["verdict"] == "reproduced"
    assert claims["units"]["verdict"] == "reproduced"
    assert claims["data-scaling"]["verdict"] == claims["size-vs-data"]["verdict"] == \
        claims["regularisation"]["verdict"] == "reproduced"
    for c in claims.values():
        assert set(c) == {"id", "claim", "paper_evidence", "verdict", "evidence", "chapter"}
    # a Mixer that loses accuracy under the patch+pixel shuffle: only partly
    records["e3-mixer-patch_pixel-s0"] = rec(30.0)
    records["e3-mixer-patch_pixel-s1"] = rec(30.5)
    assert {c["id"]: c for c in ledger(records, [bench])}["permutation"]["verdict"] == "partly"
    assert {c["id"]: c["verdict"] for c in ledger({}, None)}["transfer"] == "pending"


def test_local_energy_tells_local_units_from_random_ones():
    grid = 8
    local = torch.zeros(4, grid * grid)
    local[:, 9] = 1.0  # one patch
    local[:, 10] = 0.5  # its neighbour
    assert local_energy(local, grid) == pytest.approx(1.0)
    torch.manual_seed(0)
    noise = torch.randn(256, grid * grid)
    assert local_energy(noise, grid) < 0.35
    stats = token_mixing_stats(create_model("Mixer-T/4", num_classes=10))
    assert stats["grid"] == 8 and len(stats["blocks"]) == 4
    assert set(stats["blocks"][0]) == {"neighbour_correlation", "init_neighbour_correlation",
                                       "local_energy", "init_local_energy"}


def test_study_is_sized_as_the_issue_asks():
    runs = {r.name: r for r in study_runs()}
    up = runs["e1-up-mixer"].config
    assert up["steps"] * up["batch_size"] >= 500_000
    for dev in DEVIATIONS:
        assert {f"e6-{dev}-s0", f"e6-{dev}-s1"} <= set(runs)
    assert runs["e1-ft-mixer-s0"].config["recipe"] == "finetune"
    assert runs["e1-ft-mixer-s0"].run_config().resolved().optimizer == "sgd"


def test_every_claim_is_one_registry_entry_with_a_stated_rule():
    import inspect

    import mixer_lib.claims as claims_module
    from mixer_lib.claims import CLAIMS, ledger

    source = inspect.getsource(claims_module)
    assert len({c.id for c in CLAIMS}) == len(CLAIMS)
    for claim in CLAIMS:
        assert claim.rule.__doc__ and claim.rule.__doc__.strip(), claim.id
        assert source.count(claim.sentence[:40]) == 1, claim.id  # the sentence written once
    empty = ledger({}, None)
    assert [c["id"] for c in empty] == [c.id for c in CLAIMS]
    assert {c["verdict"] for c in empty} == {"pending", "not testable here"}
    assert all(c["claim"] == k.sentence for c, k in zip(empty, CLAIMS, strict=True))


def test_significance_is_decided_in_one_place():
    from mixer_lib.evaluate import accuracy_change
    from mixer_lib.significance import gain, loss, significant

    assert significant(2.1, 1.0) and significant(-2.1, 1.0) and not significant(1.9, 1.0)
    assert gain(2.1, 1.0) and not gain(-2.1, 1.0) and loss(-2.1, 1.0) and not loss(2.1, 1.0)
    # accuracy comparisons ask the same rule: 2 binomial s.e. on 10,000 images ~ 0.85 points
    assert accuracy_change(90.0, 91.0, 10_000).verdict == "gain"
    assert accuracy_change(90.0, 90.5, 10_000).verdict == "within noise"
    assert accuracy_change(90.0, 89.0, 10_000).verdict == "drop"


def test_rule_rows_state_every_rule_as_the_code_applies_it():
    from mixer_lib.claims import CLAIMS, rule_rows

    header, rows = rule_rows()
    assert header == ["claim", "rule"] and len(rows) == len(CLAIMS)
    scaling = next(r for r in rows if r[0].startswith("Mixer improves more"))
    assert "5-shot probe" in scaling[1] and "minus ResNet-S" in scaling[1]
