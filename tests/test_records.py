"""Result records: collection with run names, HTML tables for the book."""

from __future__ import annotations

import json

from mixer_lib.published import PAPER, REPRODUCTION_REPORT
from mixer_lib.records import collect, html_table, made_summary, timm_peer


def test_collect_names_each_run_by_its_folder(tmp_path):
    runs = tmp_path / "runs"
    for name, top1 in (("permutation/Mixer-T_4-global", 30.0), ("finetune-cifar10", 40.0)):
        (runs / name).mkdir(parents=True)
        (runs / name / "results.json").write_text(json.dumps({"top1": top1,
                                                              "dataset": "cifar10"}))
    (runs / "notes.json").write_text(json.dumps({"not": "a result"}))
    committed = tmp_path / "results"
    committed.mkdir()
    (committed / "gpu-b16-cifar10.json").write_text(json.dumps({"top1": 98.0,
                                                               "dataset": "cifar10"}))
    records = collect(runs, committed, tmp_path / "absent")
    assert [(r["run"], r["top1"]) for r in records] == [
        ("finetune-cifar10", 40.0), ("permutation/Mixer-T_4-global", 30.0),
        ("gpu-b16-cifar10", 98.0)]


def test_html_table_escapes_and_marks_missing():
    html = html_table(["a", "b<c"], [[1, None], ["<x>", 2.5]])
    assert "<th>b&lt;c</th>" in html and "<td>missing</td>" in html
    assert "<td>&lt;x&gt;</td>" in html and html.count("<tr>") == 3


def test_published_tables_cover_the_same_runs():
    assert set(PAPER) == set(REPRODUCTION_REPORT)
    assert all(set(cells) == {"avg5", "imagenet1k", "real"} for cells in PAPER.values())
    assert all(set(cells) == {"avg5", "imagenet1k"} for cells in REPRODUCTION_REPORT.values())


def test_timm_peer_matches_model_dtype_and_mode():
    def row(model, dtype="fp32", mode="eager"):
        return {"model": model, "dtype": dtype, "mode": mode}

    rows = [row("Mixer-B/16"), row("Mixer-B/16@gelu=exact", mode="compile"),
            row("Mixer-S/32"), row("timm:mixer_b16_224"),
            row("timm:mixer_b16_224", mode="compile"), row("Mixer-B/16", dtype="bf16")]
    assert timm_peer(rows[0], rows) is rows[3]
    assert timm_peer(rows[1], rows) is rows[4]
    assert timm_peer(rows[2], rows) is None  # not our Mixer-B/16
    assert timm_peer(rows[3], rows) is None  # the peer itself
    assert timm_peer(rows[5], rows) is None  # no bf16 peer in this run


def _protocol(dataset, mean, std=0.1, dry=False, real=None, variant="Mixer-B/16",
              weights="imagenet21k"):
    p = {"dataset": dataset, "variant": variant, "weights": weights, "test_top1_mean": mean,
         "test_top1_std": std, "dry_run": dry}
    if real is not None:
        p.update(real_top1_mean=real, real_top1_std=0.2)
    return p


def test_comparison_fills_our_cells_from_protocol_records():
    from mixer_lib.records import comparison_rows

    done = [_protocol("imagenet1k", 80.1, real=85.0),
            _protocol("cifar10", 98.0) | {"test_top1_resize_mean": 97.5,
                                          "test_top1_resize_std": 0.3},
            _protocol("cifar100", 90.0), _protocol("pets", 94.0), _protocol("flowers102", 99.0)]
    header, rows = comparison_rows(done)
    assert len(rows) == 1
    row = dict(zip(header, rows[0], strict=True))
    assert row["ours: ImageNet"] == "80.10 ± 0.10" and row["ours: ReaL"] == "85.00 ± 0.20"
    assert row["ours: Avg 5"] == f"{(80.1 + 98 + 90 + 94 + 99) / 5:.2f}"
    assert row["paper: ImageNet"] == 80.64 and row["official README: CIFAR-10"] == 96.82
    assert row["reproduction: ImageNet"] == 72.64
    assert row["ours: CIFAR-10"] == "98.00 ± 0.10"
    assert row["ours: CIFAR-10, resized (as the README)"] == "97.50 ± 0.30"
    # four of five: no Avg 5 (never an average over fewer)
    header, rows = comparison_rows(done[:4])
    assert dict(zip(header, rows[0], strict=True))["ours: Avg 5"] is None


def test_dry_run_figures_are_always_labelled():
    from mixer_lib.records import comparison_rows, measured

    dry = [_protocol("standin:" + d, 10.0, dry=True, real=11.0 if d == "imagenet1k" else None)
           | ({"test_top1_resize_mean": 9.0, "test_top1_resize_std": 0.1} if d == "cifar10"
              else {}) for d in ("imagenet1k", "cifar10", "cifar100", "pets", "flowers102")]
    header, rows = comparison_rows(dry)
    ours = [v for h, v in zip(header, rows[0], strict=True) if h.startswith("ours")]
    assert all(v is not None and v.startswith("dry run: ") for v in ours)
    assert measured(None) is None and measured(1.0, None, True) == "dry run: 1.00"
    # with no protocol record at all, the paper's rows are listed with ours missing
    header, rows = comparison_rows([])
    assert len(rows) == 4 and all(r[2] is None for r in rows)


def test_comparison_says_what_fills_cells_this_build_did_not_run():
    from mixer_lib.records import comparison_rows

    header, rows = comparison_rows([], not_run="paper profile")
    assert all(row[2:7] == ["paper profile"] * 5 for row in rows)
    assert all(row[7] is not None for row in rows)  # the paper's figures untouched



def test_benchmark_table_compares_ours_with_timms_mixer_in_the_same_dtype_and_mode():
    from mixer_lib.records import benchmark_provenance, benchmark_table

    def row(model, mode, train, mem=None, mfu=None):
        return {"model": model, "dtype": "bf16", "mode": mode, "batch": 8, "gflops_fwd": 25.2,
                "infer_img_s": 10.0, "train_img_s": train, "peak_mem_gib": mem, "mfu": mfu}

    rec = {"source": "r.json", "preset": "p", "environment": {
        "device": "cpu", "torch": "2", "git_commit": "abcdef0123456", "date": "d"},
        "rows": [row("Mixer-B/16", "eager", 3.0), row("timm:mixer_b16_224", "eager", 2.0),
                 row("Mixer-B/16", "compile", 4.0), row("timm:vit_base_patch16_224", "eager", 1.0)]}
    header, rows = benchmark_table(rec)
    assert header[-1] == "train vs timm Mixer-B/16" and len(header) == 8  # no GPU columns
    assert [r[-1] for r in rows] == ["1.50x", "", "", ""]  # no compiled timm peer
    assert benchmark_provenance(rec) == "r.json: preset p, cpu, torch 2, commit abcdef0123, d"
    gpu = dict(rec, rows=[row("Mixer-B/16", "eager", 3.0, 1.5, 0.42)])
    header, rows = benchmark_table(gpu)
    assert header[-2:] == ["peak mem GiB", "MFU"] and rows[0][-2:] == ["1.5", "42%"]


def test_size_rows_count_parameters_with_the_head_and_flops_at_224():
    from mixer_lib.flops import size_rows

    header, rows = size_rows(("Mixer-B/16",))
    assert header == ["variant", "params (M)", "GFLOPs / image at 224 px"]
    assert rows == [["Mixer-B/16", "59.9", "25.2"]]


def test_inventory_counts_records_and_labels_a_dry_run():
    from mixer_lib.records import inventory, per_class_table

    assert inventory([{}], [], [{}, {}]) == \
        "1 result records, 0 protocol records, 2 benchmark records"
    assert "DRY RUN" in inventory([], [_protocol("cifar10", 50.0, dry=True)], [])
    header, rows = per_class_table({"eval_split": "test", "per_class": [[0, "cat", 50.0]]},
                                   dry_run=True)
    assert header[2] == "test top-1 (%)" and rows == [[0, "cat", "dry run: 50.00"]]


def test_protocol_and_run_tables_show_each_record_labelled():
    from mixer_lib.records import protocol_table, run_provenance, run_table

    p = _protocol("standin:cifar10", 50.0, dry=True) | {
        "dev_top1": {"0.01": 40.0, "0.03": 45.0}, "chosen_lr": 0.03, "test_top1": [49.9, 50.1]}
    header, rows = protocol_table([p])
    assert rows == [["standin:cifar10", "Mixer-B/16 (imagenet21k)",
                     "0.01: dry run: 40.00, 0.03: dry run: 45.00", 0.03,
                     "dry run: 50.00 ± 0.10", 2]]
    r = {"run": "a", "variant": "Mixer-T/4", "weights": "random", "dataset": "cifar10-jpeg",
         "config": {"img_size": 32}, "top1": 60.0, "top5": 95.0, "steps": 10, "num_train": 100,
         "num_eval": 50, "data": "JPEG copy", "environment": {
             "device": "cpu", "torch": "2.14.1", "git_commit": "0123456789abc", "date": "d"}}
    header, rows = run_table([r])
    assert rows[0] == ["a", "Mixer-T/4 (random)", "cifar10-jpeg", "none", "60.00", "95.00", 10,
                       "100 / 50 at 32 px"]
    assert run_provenance([r]) == "a: JPEG copy; cpu, torch 2.14.1, commit 0123456789, d"


def test_made_summary_lists_devices_commits_dates_and_minutes():
    def rec(device, commit, date, seconds):
        return {"environment": {"device": device, "git_commit": commit, "date": date},
                "wall_time_s": seconds}

    resumed = rec("cpu", "0123456789abcdef", "2026-11-26T11:00:00", 20) | {
        "wall_time_total_s": 60}  # its earlier process took 40 s
    made = made_summary([rec("cpu", "0123456789abcdef", "2026-11-26T10:00:00", 90),
                         rec("NVIDIA H200", "fedcba9876543210", "2026-11-25T09:00:00", 150),
                         resumed])
    assert made == {"devices": "NVIDIA H200, cpu", "commits": "0123456789ab, fedcba987654",
                    "dates": "2026-11-25, 2026-11-26", "minutes": "5"}
    assert made_summary([]) == {"devices": "(none yet)", "commits": "(none yet)",
                                "dates": "(none yet)", "minutes": "0"}
