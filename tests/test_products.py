"""mixer_lib.products: where the products' time goes, read from synthetic and committed
records."""

from __future__ import annotations

import json

import pytest

from mixer_lib.products import (
    part,
    products_summary,
    products_table,
    token_forms_summary,
    token_forms_table,
)
from mixer_lib.throughputs import MODEL_FORMS


def group(op, shapes, seconds, calls=1, tflops=None, **extra):
    return {"op": op, "shapes": shapes, "strides": [], "dtype": "torch.bfloat16",
            "calls": calls, "seconds": seconds, "tflops": tflops, **extra}


def row(model, matmul_s, groups, img_s=1000.0, gflops=10.0):
    return {"model": model, "dtype": "bf16", "mode": "eager", "batch": 100,
            "infer_img_s": img_s, "gflops_fwd": gflops, "infer_matmul_s": matmul_s,
            "infer_matmul_groups": groups}


def products_record(date, token_seconds=0.003):
    ours = [group("convolution", [[100, 3, 224, 224], [768, 3, 16, 16]], 0.001),
            group("baddbmm", [[1, 384, 1], [100, 384, 196], [100, 196, 768]], token_seconds,
                  calls=2, tflops=50.0, aligned_seconds=token_seconds / 2),
            group("addmm", [[3072], [19600, 768], [768, 3072]], 0.002, calls=2,
                  tflops=500.0),
            group("addmm", [[1000], [100, 768], [768, 1000]], 0.0001, tflops=2.0)]
    vit = [group("_scaled_dot_product_flash_attention", [[100, 12, 197, 64]], 0.001),
           group("addmm", [[3072], [19700, 768], [768, 3072]], 0.004, calls=2,
                 tflops=600.0)]
    return {"preset": "perf-gpu-products", "img_size": 224,
            "matmul_peak_tflops_by_dtype": {"bf16": 800.0},
            "environment": {"device": "NVIDIA H200", "date": date, "git_commit": "abcdef12"},
            "rows": [row("Mixer-B/16", 0.01, ours), row("timm:vit_base_patch16_224", 0.012,
                                                         vit),
                     {**row("Mixer-B/16", 0.01, ours), "dtype": "fp32"}]}


def test_parts_of_a_model_are_named_from_the_products_shapes():
    assert part(group("convolution_backward", [[1]], 0), 196) == "stem (convolution)"
    assert part(group("_scaled_dot_product_cudnn_attention", [[1]], 0), 196) == \
        "attention (fused kernel)"
    assert part(group("bmm", [[8, 384, 196]], 0), 196) == "token mixing"
    assert part(group("mm", [[98304, 196], [196, 384]], 0), 196) == "token mixing"
    assert part(group("addmm", [[25088, 768], [768, 3072]], 0), 196) == "dense layers"
    assert part(group("addmm", [[768], [25088, 768], [768, 768]], 0), 196) == "stem (product)"
    assert part(group("mm", [[768, 25088], [25088, 768]], 0), 196) == "stem (product)"
    assert part(group("addmm", [[768], [25216, 768], [768, 768]], 0), 196) == \
        "dense layers"  # ViT's attention projection: 128 x 197 rows
    assert part(group("addmm", [[128, 768], [768, 1000]], 0), 196) == "head"


def test_products_of_the_latest_record_by_part_and_the_summary(tmp_path):
    (tmp_path / "benchmark-perf-gpu-products-old.json").write_text(
        json.dumps(products_record("2026-01-01", token_seconds=0.5)))
    (tmp_path / "benchmark-perf-gpu-products-NVIDIA-H200.json").write_text(
        json.dumps(products_record("2026-11-27")))
    headers, rows = products_table(tmp_path)
    ours = {r[1]: r for r in rows if r[0] == "Mixer-B/16"}
    # parts: 0.001 stem, 0.006 token, 0.004 dense, 0.0001 head = 0.0111 s
    stem = 2 * 100 * 224 * 224 * 768 * 3 / 1e12  # TFLOP of the convolution, kernel = stride
    total = stem + 0.3 + 2 + 0.0002  # TFLOP: stem, token mixing, dense layers, head
    assert ours["stem (convolution)"][2:] == ["1.00", "9 %", f"{100 * stem / total:.0f} %",
                                              f"{stem / 0.001:.0f}"]
    assert ours["token mixing"][2:] == ["6.00", "54 %", f"{100 * 0.3 / total:.0f} %", "50"]
    assert ours["dense layers"][2] == "4.00" and ours["dense layers"][5] == "500"
    assert ours["all products in sequence / the inference call"][2:4] == [
        "10.00 / 100.00", "10 % of the call"]
    assert {r[1] for r in rows if r[0] == "ViT-B/16"} == {
        "attention (fused kernel)", "dense layers",
        "all products in sequence / the inference call"}
    summary = products_summary(tmp_path)
    assert summary["pr_where"] == "H200, 2026-11-27, commit abcdef1"
    assert (summary["pr_ours_ms"], summary["pr_vit_ms"], summary["pr_ratio"]) == (
        "10.00 ms", "12.00 ms", "1.20x")
    assert summary["pr_token_tflops"] == "50" and summary["pr_dense_tflops"] == "500"
    # 10 GFLOP x 100 images in 10 ms = 100 TFLOP/s of an 800 peak
    assert summary["pr_products_mfu"] == "12 %"
    assert summary["pr_aligned"] == "3.000 ms aligned 1.500 ms"
    assert summary["pr_stem"] == "1.00 ms at 23 TFLOP/s, 9 % of the products' time"
    assert summary["pr_stem_at_dense"] == f"{1e3 * stem / 500:.2f} ms"  # 500 TFLOP/s dense


def test_without_records_nothing_is_made_up(tmp_path):
    assert products_table(tmp_path)[1] == [] and token_forms_table(tmp_path)[1] == []
    assert set(products_summary(tmp_path).values()) == {"not measured"}
    assert set(token_forms_summary(tmp_path).values()) == {"not measured"}


def test_token_forms_against_the_models_own(tmp_path):
    mlp = {"forward_ms": 0.4, "forward_tflops": 75.0, "train_ms": 1.0, "train_tflops": 90.0}
    record = {"environment": {"device": "NVIDIA H200", "date": "2026-11-27",
                              "git_commit": "1234567890"},
              "mlp": {"left": mlp, "right": mlp, "compiled": mlp},
              "model": {"model's own": {"infer_img_s": 100.0, "train_img_s": 50.0},
                        "left": {"infer_img_s": 101.0, "train_img_s": 50.0},
                        "right": {"infer_img_s": 90.0, "train_img_s": 40.0}}}
    (tmp_path / "benchmark-token-mixing-NVIDIA-H200.json").write_text(json.dumps(record))
    headers, rows = token_forms_table(tmp_path)
    by = {r[0]: r for r in rows}
    assert by["right"][5:] == ["90 (0.90x)", "40 (0.80x)"] and by["compiled"][5:] == ["-", "-"]
    assert token_forms_summary(tmp_path) == {"tf_where": "H200, 2026-11-27, commit 1234567",
                                             "tf_best": "left, 1.01x"}


@pytest.mark.parametrize("table", [products_table, token_forms_table])
def test_the_committed_records_are_read(table):
    headers, rows = table()
    assert rows and all(len(r) == len(headers) for r in rows)


def test_gpu_targets_read_the_latest_perf_record_in_like_modes(tmp_path):
    from mixer_lib.products import targets_table, targets_verdict

    def ratio(peer, mode, peer_mode, inference, training):
        return {"dtype": "bf16", "batch": 128, "mode": mode, "peer": peer,
                "peer_mode": peer_mode, "inference": inference, "training": training}

    vit, timm = "timm:vit_base_patch16_224", "timm:mixer_b16_224"
    record = {"preset": "perf-gpu", "model_form": list(MODEL_FORMS)[-1], "environment": {
                  "device": "NVIDIA H100 80GB HBM3", "date": "2026-12-01",
                  "git_commit": "feedbeef00"},
              "ratios": [ratio(vit, "eager", "eager", 1.1, 1.19),
                         ratio(vit, "compile", "compile", 1.31, 1.25),
                         ratio(timm, "eager", "eager", 1.1, 1.2),
                         ratio(timm, "compile", "eager", 1.6, 1.7),
                         {**ratio(vit, "eager", "eager", 9.0, 9.0), "batch": 512}],
              # the bf16 peak measured three times in the run: shares against the highest
              # (a bf16w row's own infer_mfu against 700 would read 62 %, "met")
              "matmul_peak_tflops": 760.0,
              "matmul_peak_tflops_by_dtype": {"bf16": 800.0, "bf16w": 700.0, "fp32": 50.0},
              "rows": [{"model": "Mixer-B/16", "dtype": "bf16", "batch": 128,
                        "mode": "eager", "infer_tflops": 320.0, "infer_mfu": 0.4},
                       {"model": "Mixer-B/16", "dtype": "bf16", "batch": 128,
                        "mode": "compile", "infer_tflops": 448.0, "infer_mfu": 0.56},
                       {"model": "Mixer-B/16", "dtype": "bf16w", "batch": 128,
                        "mode": "eager", "infer_tflops": 432.0, "infer_mfu": 0.62}]}
    older = {**record, "environment": {**record["environment"], "date": "2026-01-01"},
             "ratios": [], "rows": []}
    (tmp_path / "benchmark-perf-gpu-NVIDIA-H100.json").write_text(json.dumps(record))
    (tmp_path / "benchmark-perf-gpu-old.json").write_text(json.dumps(older))
    headers, rows = targets_table(tmp_path)
    assert headers[-1] == "met (H100 80GB HBM3, 2026-12-01, commit feedbee, batch 128)"
    assert rows == [
        ["Mixer-B/16 / ViT-B/16, inference", ">= 1.3x", "1.10x", "1.31x", "yes"],
        ["Mixer-B/16 / ViT-B/16, training", ">= 1.2x", "1.19x", "1.25x", "yes"],
        ["ours / timm's Mixer-B/16, inference", ">= 1.15x", "1.10x", "1.60x (peer eager)",
         "no"],  # ours compiled against timm's eager does not count
        ["ours / timm's Mixer-B/16, training", ">= 1.15x", "1.20x", "1.70x (peer eager)",
         "yes"],
        ["Mixer-B/16 inference (bf16 autocast), share of the bf16 matmul peak", ">= 55 %",
         "40 %", "56 %", "yes"],
        ["Mixer-B/16 inference (bf16 weights), share of the bf16 matmul peak", ">= 55 %",
         "54 %", "-", "no"]]
    assert targets_table(tmp_path / "none")[1] == []
    assert targets_verdict(tmp_path) == (
        "4 of 6 targets met (missed: ours / timm's Mixer-B/16, inference; "
        "Mixer-B/16 inference (bf16 weights), share of the bf16 matmul peak)")
    assert targets_verdict(tmp_path / "none") == "not measured"
    # a record of an earlier form of the model says so; one without bf16 weights has no row
    record |= {"model_form": "bsc-token-kernel", "rows": record["rows"][:2]}
    (tmp_path / "benchmark-perf-gpu-NVIDIA-H100.json").write_text(json.dumps(record))
    headers, rows = targets_table(tmp_path)
    assert headers[-1] == ("met (H100 80GB HBM3, 2026-12-01, commit feedbee, batch 128, "
                           "earlier model form: bsc-token-kernel)")
    assert [r[0] for r in rows][-1].startswith("Mixer-B/16 inference (bf16 autocast)")
    # with bf16 weights too: the inference ratios again (training has none), after bf16's
    record["ratios"] += [{**ratio(vit, "eager", "eager", 1.32, None), "dtype": "bf16w"},
                         {**ratio(timm, "compile", "compile", 1.1, None), "dtype": "bf16w"},
                         {**ratio(vit, "eager", "eager", 2.0, None), "dtype": "bf16w",
                          "batch": 512}]
    (tmp_path / "benchmark-perf-gpu-NVIDIA-H100.json").write_text(json.dumps(record))
    rows = targets_table(tmp_path)[1]
    assert rows[4:6] == [
        ["Mixer-B/16 / ViT-B/16, inference (bf16 weights)", ">= 1.3x", "1.32x", "-", "yes"],
        ["ours / timm's Mixer-B/16, inference (bf16 weights)", ">= 1.15x", "-", "1.10x", "no"]]
    assert len(rows) == 7


def test_targets_verdict_names_what_is_missed_or_unmeasured(monkeypatch):
    from mixer_lib import products

    def table(*met):
        return ["target", "met"], [[f"t{i}", m] for i, m in enumerate(met)]

    monkeypatch.setattr(products, "targets_table", lambda folder, batch: table("yes", "yes"))
    assert products.targets_verdict() == "all 2 of 2 targets met"
    monkeypatch.setattr(products, "targets_table", lambda folder, batch: table("yes", "-", "no"))
    assert products.targets_verdict() == "1 of 3 targets met (missed: t2; not measured: t1)"


def test_bf16_weights_speedup_reads_ours_eager_rows(tmp_path):
    from mixer_lib.products import bf16_weights_speedup

    def row(dtype, img_s, model="Mixer-B/16", mode="eager"):
        return {"model": model, "dtype": dtype, "mode": mode, "batch": 128,
                "infer_img_s": img_s}

    record = {"preset": "perf-gpu", "environment": {"date": "2026-11-27"},
              "rows": [row("bf16", 800.0), row("bf16w", 1000.0), row("bf16", 5.0, mode="compile"),
                       row("bf16w", 9.0, model="timm:mixer_b16_224")]}
    (tmp_path / "benchmark-perf-gpu-NVIDIA-H200.json").write_text(json.dumps(record))
    assert bf16_weights_speedup(tmp_path) == "1.25x"
    record["rows"] = record["rows"][:1]
    (tmp_path / "benchmark-perf-gpu-NVIDIA-H200.json").write_text(json.dumps(record))
    assert bf16_weights_speedup(tmp_path) == "not measured"
    assert bf16_weights_speedup(tmp_path / "none") == "not measured"


def test_token_forms_show_the_fused_kernel_and_skip_a_run_cut_short(tmp_path):
    """The fused kernel's MLP row has no training time; the model's own rows with and
    without it follow the forms, as multiples of the unfused one; a later record whose run
    stopped before timing every form in the model is passed over for the complete one."""
    mlp = {"forward_ms": 0.4, "forward_tflops": 75.0, "train_ms": 1.0, "train_tflops": 90.0}
    fused = {"forward_ms": 0.2, "forward_tflops": 150.0, "train_ms": None,
             "train_tflops": None}
    env = {"device": "NVIDIA H200", "date": "2026-11-27T09:00", "git_commit": "abcdef1234"}
    record = {"environment": env, "mlp": {"left": mlp, "fused-kernel": fused},
              "model": {"model's own": {"infer_img_s": 120.0, "train_img_s": 50.0},
                        "model's own, unfused": {"infer_img_s": 100.0, "train_img_s": 50.0},
                        "left": {"infer_img_s": 99.0, "train_img_s": 50.0}}}
    (tmp_path / "benchmark-token-mixing-NVIDIA-H200.json").write_text(json.dumps(record))
    cut = {"environment": dict(env, date="2026-11-27T10:00"),
           "mlp": {"left": mlp, "right": mlp}, "model": {"left": record["model"]["left"]}}
    (tmp_path / "benchmark-token-mixing-NVIDIA-H200-1234567.json").write_text(json.dumps(cut))
    headers, rows = token_forms_table(tmp_path)
    by = {r[0]: r for r in rows}
    assert by["fused-kernel"][3:5] == ["(inference only)", "-"]
    assert by["model's own"] == ["model's own", "-", "-", "-", "-", "120 (1.20x)", "50 (1.00x)"]
    assert "right" not in by  # the record cut short is not the one shown
    assert token_forms_summary(tmp_path)["tf_best"] == "left, 0.99x"


def test_the_products_summary_reads_ours_without_the_fused_kernel_where_measured(tmp_path):
    """Since the fused kernel, the products preset measures ours with it turned off (its
    work is no library product); the summary reads that row as ours, and the same figures."""
    from mixer_lib.products import UNFUSED

    record = products_record("2026-11-28")
    for r in record["rows"]:
        r["model"] = UNFUSED if r["model"] == "Mixer-B/16" else r["model"]
    (tmp_path / "benchmark-perf-gpu-products-NVIDIA-H200.json").write_text(json.dumps(record))
    summary = products_summary(tmp_path)
    assert summary["pr_ratio"] == "1.20x" and summary["pr_token_tflops"] == "50"
