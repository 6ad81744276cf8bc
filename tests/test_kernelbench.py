"""mixer_lib.kernelbench: the fused token-mixing kernel's records as the Claims chapter shows
them, from synthetic records and the committed ones."""

from __future__ import annotations

import json

from mixer_lib.kernelbench import (
    UNFUSED,
    checks_table,
    compiled_summary,
    compiled_table,
    kernel_summary,
    shapes_table,
)

ENV = {"device": "NVIDIA H200", "date": "2026-11-27T10:00:00+00:00",
       "git_commit": "c" * 40 + " (shipped copy)"}


def write(folder, name, record):
    (folder / name).write_text(json.dumps(record))


def test_shapes_the_best_one_and_its_share_of_the_same_commits_peak(tmp_path):
    write(tmp_path, "benchmark-token-kernel-configs-NVIDIA-H200.json", {
        "environment": ENV, "results": [
            {"config": [False, 64, 64, 8, 2], "max_abs_diff": 0.02, "ms": 0.4, "tflops": 100.0},
            {"config": [True, 128, 64, 8, 2], "max_abs_diff": 0.02, "ms": 0.2, "tflops": 200.0},
            {"config": [True, 32, 64, 4, 2], "error": "illegal memory access"}]})
    rows = {128: 1000.0, 64: 800.0}
    write(tmp_path, "benchmark-perf-gpu-NVIDIA-H200.json", {
        "preset": "perf-gpu", "environment": ENV, "matmul_peak_tflops_by_dtype": {"bf16": 800.0},
        "rows": [{"model": m, "dtype": "bf16", "mode": "eager", "batch": 128,
                  "infer_img_s": rate} for m, rate in (("Mixer-B/16", rows[128]),
                                                       (UNFUSED, rows[64]))]})
    headers, shapes = shapes_table(tmp_path)
    assert shapes[1] == ["channels as rows", "128", "64", "8", "2", "0.02", "0.200", "200"]
    assert shapes[2][5:] == ["failed: illegal memory access", "-", "-"]
    summary = kernel_summary(tmp_path)
    assert summary["tk_best_ms"] == "0.200 ms" and summary["tk_best_tflops"] == "200"
    assert summary["tk_best_share"] == "25 %"
    assert summary["tk_model"] == "1.25x (bf16 autocast, batch 128)"
    assert summary["tk_where"] == summary["tk_model_where"] == "H200, 2026-11-27, commit ccccccc"


def test_the_kernels_whole_model_ratio_comes_from_the_newest_record_of_either_preset(tmp_path):
    """Since 2026-11-28 the forms preset measures ours without the kernel (inference only);
    the newest of it and the older perf-gpu records gives the ratio, each dtype it has."""
    def perf(name, preset, date, pairs):
        write(tmp_path, name, {
            "preset": preset, "environment": dict(ENV, date=date),
            "rows": [{"model": m, "dtype": d, "mode": "eager", "batch": 128, "infer_img_s": v}
                     for d, ours, off in pairs for m, v in (("Mixer-B/16", ours),
                                                            (UNFUSED, off))]})

    perf("benchmark-perf-gpu-NVIDIA-H200.json", "perf-gpu", "2026-11-27T10:00:00+00:00",
         [("bf16", 1000.0, 800.0)])
    perf("benchmark-perf-gpu-forms-NVIDIA-H200.json", "perf-gpu-forms",
         "2026-11-28T10:00:00+00:00", [("bf16", 1100.0, 1000.0), ("bf16w", 1500.0, 1200.0)])
    summary = kernel_summary(tmp_path)
    assert summary["tk_model"] == ("1.10x (bf16 autocast, batch 128), "
                                   "1.25x (bf16 weights, batch 128)")
    assert summary["tk_model_where"] == "H200, 2026-11-28, commit ccccccc"


def test_shapes_written_by_form_name_and_by_the_older_flag_read_alike(tmp_path):
    write(tmp_path, "benchmark-token-kernel-configs-NVIDIA-H200.json", {
        "environment": ENV, "results": [
            {"config": ["tma", 128, 64, 8, 1], "max_abs_diff": 0.02, "ms": 0.1, "tflops": 300.0},
            {"config": ["channels", 128, 64, 8, 2], "max_abs_diff": 0.02},
            {"config": ["tokens", 64, 64, 8, 2], "error": "TMA"}]})
    assert [r[0] for r in shapes_table(tmp_path)[1]] == [
        "channels as rows, TMA", "channels as rows", "tokens as rows"]


def compiled_case(config, tokens, spills, gelu="tanh", x_dtype="bf16", ld=300, tma=0,
                  shared=131072):
    return {"config": config, "tokens": tokens, "block_tokens": 256 if tokens > 64 else 64,
            "gelu": gelu, "x_dtype": x_dtype, "registers": 255, "spill_stores": spills,
            "spill_loads": spills, "shared_bytes": shared,
            "instructions": {"ld.global": ld, "cp.async.ca": 0, "cp.async.cg": 0,
                             "cp.async.bulk.tensor": tma, "wgmma.mma_async": 20,
                             "mma.sync": 0}}


def test_compiled_table_and_summary_read_the_record_of_the_gpus_triton(tmp_path):
    cpu = dict(ENV, device="cpu (x86_64, 2 cores)")
    for version, spill in (("3.6.0", 2000), ("3.8.0", 7)):
        write(tmp_path, f"benchmark-token-kernel-compiled-sm_90a-triton-{version}.json", {
            "arch": "sm_90a", "triton": version, "environment": cpu, "results": [
                compiled_case([False, 64, 64, 8, 2], 196, spill),
                compiled_case(["channels", 128, 64, 8, 2], 196, 900),
                compiled_case(["channels", 128, 64, 8, 2], 49, 0),
                compiled_case(["channels", 128, 64, 8, 2], 49, 0, gelu="exact"),
                compiled_case(["channels", 128, 64, 8, 2], 196, 950, gelu="exact"),
                compiled_case(["tma", 128, 64, 8, 1], 196, 0, ld=17, tma=5),
                dict(compiled_case(["tma", 64, 64, 8, 3], 196, 0), error="OutOfResources"),
                compiled_case(["tma", 128, 64, 8, 3], 196, 0, shared=262200),
                # a float32 stream (not the model's): its own summary, not in the table
                compiled_case(["tma", 128, 64, 8, 1], 196, 44, x_dtype="fp32"),
                compiled_case(["tma", 128, 64, 8, 3], 196, 20, x_dtype="fp32"),
                compiled_case(["channels", 128, 64, 8, 2], 196, 5000, x_dtype="fp32")]})
    # no GPU configs record: the latest compiled record (dates tie: either is fine)
    assert compiled_summary(tmp_path)["tkc_where"].startswith("Triton 3.")
    write(tmp_path, "benchmark-token-kernel-configs-NVIDIA-H200.json", {
        "environment": dict(ENV, triton="3.6.0"), "results": []})
    headers, rows = compiled_table(tmp_path)
    assert headers[-3:] == ["ld.global", "TMA", "wgmma"]
    assert [r[:5] for r in rows[:3]] == [
        ["pointers: tokens", "64 x 64", "8, 2", "255", "2000"],  # the record of 3.6.0
        ["pointers: channels", "128 x 64", "8, 2", "255", "900"],
        ["TMA: channels", "128 x 64", "8, 1", "255", "0"]]
    assert rows[2][5:] == ["128", "17", "5", "20"]
    assert rows[3][3].startswith("failed: OutOfResources") and len(rows[3]) == len(headers)
    assert rows[4][5] == "256 (over 227)" and len(rows) == 5  # the bf16 cases at 196, tanh
    summary = compiled_summary(tmp_path)
    assert summary["tkc_where"] == ("Triton 3.6.0 for sm_90a, built on cpu, 2026-11-27, "
                                    "commit ccccccc")
    assert summary["tkc_pointers_spills"] == "900-2,000"  # 256 padded tokens only
    assert summary["tkc_pointers_spilling"] == "2 of 2"
    assert summary["tkc_tma_spills"] == "0" and summary["tkc_tma_spilling"] == "0 of 2"
    assert summary["tkc_tma_fp32"] == "2 of 2 shapes spill, at most 44 bytes per thread"
    assert summary["tkc_pointers_short"] == "0 of 2 shapes spill"
    assert summary["tkc_pointers_cp_async"] == summary["tkc_tma_cp_async"] == "none"
    assert summary["tkc_tma_short"] == "not measured"  # no TMA case at 64 tokens


def test_the_peak_of_another_commit_is_not_used(tmp_path):
    write(tmp_path, "benchmark-token-kernel-configs-NVIDIA-H200.json", {
        "environment": ENV, "results": [
            {"config": [True, 128, 64, 8, 2], "max_abs_diff": 0.02, "ms": 0.2, "tflops": 200.0}]})
    write(tmp_path, "benchmark-perf-gpu-NVIDIA-H200.json", {
        "preset": "perf-gpu", "environment": dict(ENV, git_commit="d" * 40),
        "matmul_peak_tflops_by_dtype": {"bf16": 800.0}, "rows": []})
    summary = kernel_summary(tmp_path)
    assert summary["tk_best_share"] == summary["tk_model"] == "not measured"


def test_without_records_nothing_is_made_up(tmp_path):
    assert shapes_table(tmp_path)[1] == [] and checks_table(tmp_path)[1] == []
    assert compiled_table(tmp_path)[1] == []
    assert set(kernel_summary(tmp_path).values()) == {"not measured"}
    assert set(compiled_summary(tmp_path).values()) == {"not measured"}


def test_the_committed_records_are_read():
    for table in (shapes_table, checks_table, compiled_table):
        headers, rows = table()
        assert rows and all(len(r) == len(headers) for r in rows)
    checks = checks_table()[1]
    assert all(r[4].split(" of ")[0] == r[4].split(" of ")[1] for r in checks)
    assert kernel_summary()["tk_model"] != "not measured"
    compiled = compiled_summary()
    assert compiled["tkc_tma_spilling"].startswith("0 of ")
    assert compiled["tkc_tma_short"].startswith("0 of ")
    assert compiled["tkc_pointers_cp_async"] == "none"  # the claim the chapter makes
    assert compiled["tkc_where"].startswith("Triton 3.6.0")  # the H200's Triton


def test_checks_show_the_newest_check_of_each_model_with_its_record(tmp_path):
    """A run of ``token_mixing.py --checks Mixer-B/16`` replaces B/16's rows; the other
    models' rows stay from the older record, each naming its record."""
    def case(diff):
        return {"fused_vs_float32": diff, "reference_vs_float32": 0.09,
                "fused_vs_reference": 0.1, "blocks_fused": 12, "blocks": 12}

    write(tmp_path, "benchmark-token-mixing-NVIDIA-H200-old.json", {
        "environment": ENV, "check": {"Mixer-S/32 bf16": case(0.06),
                                      "Mixer-B/16 bf16": case(0.08)}})
    write(tmp_path, "benchmark-token-mixing-NVIDIA-H200.json", {
        "environment": dict(ENV, date="2026-11-28T10:00:00+00:00", git_commit="d" * 40),
        "check": {"Mixer-B/16 bf16": case(0.07), "Mixer-B/16 bf16 tma": case(0.07)}})
    headers, rows = checks_table(tmp_path)
    assert headers[-1] == "record" and all(len(r) == len(headers) for r in rows)
    assert [(r[0], r[1], r[-1][-7:]) for r in rows] == [
        ("Mixer-S/32 bf16", "0.06", "ccccccc"), ("Mixer-B/16 bf16", "0.07", "ddddddd"),
        ("Mixer-B/16 bf16 tma", "0.07", "ddddddd")]
