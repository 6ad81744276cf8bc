"""The training-loop record as the Claims chapter's tables and lines (synthetic records)."""

from __future__ import annotations

import json

from mixer_lib.loopbench import earlier_loop_records, input_table, loop_provenance, loop_tables

LOOP = {"model_alone_img_s": 400.0, "loop_img_s": 300.0, "loop_fraction_of_model_alone": 0.75,
        "loop_fraction_per_segment": [0.7, 0.8], "matmul_peak_gflops_fp32": 100.0,
        "loop_fraction_of_matmul_peak": 0.5, "gelu_share_of_forward": 0.2,
        "seconds_per_update": {"data_loader_alone": 0.02, "forward": 0.1},
        "variant": "Mixer-T/4", "img_size": 32, "batch": 128, "updates": 240, "segments": 2,
        "num_workers": 1, "environment": {"device": "cpu", "torch": "2.14.1",
                                          "git_commit": "0123456789abcdef",
                                          "date": "2026-11-26T16:31"}}


def test_tables_show_the_record_as_it_is():
    (rates_header, rates), (parts_header, parts) = loop_tables(LOOP)
    assert rates_header == ["", "images/s", "share"]
    assert rates[1][1:] == ["300", "75% (per segment: 70%, 80%)"] and rates[2][2] == "50%"
    assert parts_header == ["part of one update", "ms"]
    assert parts == [["data loader alone", "20.0"], ["forward", "100.0"],
                     ["tanh GELU, share of the forward", "20%"]]
    assert "commit 0123456789ab," in loop_provenance(LOOP)


def test_earlier_records_are_listed_with_their_method(tmp_path):
    old = dict(LOOP, loop_fraction_of_model_alone=0.87)
    (tmp_path / "benchmark-loop-cpu-abc.json").write_text(json.dumps(old))
    (tmp_path / "benchmark-loop-cpu-def.json").write_text(
        json.dumps(dict(LOOP, rate_method="window-median")))
    (tmp_path / "benchmark-loop-cpu.json").write_text(json.dumps(LOOP))  # the current one
    lines = earlier_loop_records(tmp_path)
    assert len(lines) == 2
    assert "median of single model-alone updates" in lines[0] and "87%" in lines[0]
    assert "window-median" in lines[1] and "75%" in lines[1]
    assert "1 loader worker(s)" in lines[0]


def test_loop_html_shows_the_current_record_and_the_earlier_ones(tmp_path):
    from mixer_lib.loopbench import loop_html

    assert "pending: no training-loop record" in loop_html(tmp_path)
    (tmp_path / "benchmark-loop-cpu.json").write_text(json.dumps(LOOP))
    (tmp_path / "benchmark-loop-cpu-abc.json").write_text(json.dumps(LOOP))
    html = loop_html(tmp_path)
    assert html.count("<table") == 2 and "commit 0123456789ab," in html
    assert "earlier record benchmark-loop-cpu-abc.json" in html


def test_input_records_show_the_loader_and_the_loop_against_the_model(tmp_path):
    """An early record (no decoding on the device, no loop) and a later one, by date; the
    multiples and shares as the records give them."""
    env = {"device": "cpu (x86_64, 2 cores)", "git_commit": "255d8294abc",
           "date": "2026-11-26T16:33:44+00:00"}
    early = {"variant": "Mixer-B/16", "img_size": 224, "batch": 8, "model_precision": "float32",
             "model_alone_train_img_s": 1.25, "one_worker_img_s": 229.4, "workers_needed": 1,
             "loader_over_model": 398.27, "environment": env}
    later = dict(early, device_decode_img_s_by_workers={"1": 10.0, "4": 20.0},
                 loop={"device": {"fraction_of_model_alone": 0.934, "workers": 8}},
                 loader_pixels="uint8, scaled on the device",
                 loop_cpu_by_workers={"12": {"fraction_of_model_alone": 0.951},
                                      "15": {"fraction_of_model_alone": 0.946}},
                 environment=dict(env, device="NVIDIA H200", date="2026-11-28T01:00:00"))
    (tmp_path / "benchmark-input-NVIDIA.json").write_text(json.dumps(later))
    (tmp_path / "benchmark-input-cpu.json").write_text(json.dumps(early))
    headers, rows = input_table(tmp_path)
    assert headers == ["", "cpu, 2026-11-26, commit 255d829",
                       "NVIDIA H200, 2026-11-28, commit 255d829"]
    assert [r[:2] for r in rows] == [
        ["model", "Mixer-B/16 224 px, batch 8, float32"], ["model alone (img/s)", "1.2"],
        ["one CPU worker (img/s)", "229"], ["workers needed", "1"],
        ["pixels leave the loader as", "float32"],
        ["best loader / model", "398.3x"], ["decoding on the device / model", "-"],
        ["the loop / model, decode cpu", "-"], ["the loop / model, decode device", "-"],
        ["the loop / model, decode cpu, more workers", "-"]]
    assert [r[2] for r in rows[4:]] == ["uint8, scaled on the device", "398.3x",
                                        "16.0x (best of 1, 4 workers)", "-",
                                        "93 % (8 workers)",
                                        "95 % (12 workers), 95 % (15 workers)"]
    assert input_table(tmp_path / "none") == ([""], [])
    cut = dict(later, model_alone_train_img_s=None, workers_needed=None, loader_over_model=None,
               loop={}, loop_cpu_by_workers={}, failed=[{"what": "model alone", "error": "x"}],
               environment=dict(env, device="NVIDIA H100", date="2026-11-29T01:00:00"))
    (tmp_path / "benchmark-input-NVIDIA-H100.json").write_text(json.dumps(cut))
    headers, rows = input_table(tmp_path)  # what a run that failed or was cut short lacks
    assert [r[3] for r in rows[1:]] == ["-", "229", "-", "uint8, scaled on the device", "-",
                                        "-", "-", "-", "-"]


def test_input_summary_quotes_the_latest_gpu_record(tmp_path):
    from mixer_lib.loopbench import input_summary

    def record(device, date, **extra):
        return {"environment": {"device": device, "date": date, "git_commit": "abcdef999"},
                **extra}

    (tmp_path / "benchmark-input-cpu.json").write_text(json.dumps(record(
        "cpu (x86_64, 2 cores)", "2026-12-30", loop={"cpu": {"fraction_of_model_alone": 1,
                                                               "workers": 0}})))
    (tmp_path / "benchmark-input-old.json").write_text(json.dumps(record(
        "NVIDIA H200", "2026-11-01", loop={})))
    (tmp_path / "benchmark-input-NVIDIA-H200.json").write_text(json.dumps(record(
        "NVIDIA H200", "2026-11-27T07:00", loader_pixels="uint8, scaled on the device",
        loop={"cpu": {"fraction_of_model_alone": 0.881, "workers": 8},
              "device": {"fraction_of_model_alone": 0.747, "workers": 8}},
        loop_cpu_by_workers={"12": {"fraction_of_model_alone": 0.951}})))
    assert input_summary(tmp_path) == {
        "in_where": "NVIDIA H200, 2026-11-27, commit abcdef9",
        "in_pixels": "uint8, scaled on the device", "in_loop_cpu": "88 % (8 workers)",
        "in_loop_more": "95 % (12 workers)", "in_loop_device": "75 % (8 workers)"}
    (tmp_path / "benchmark-input-NVIDIA-H200.json").unlink()
    assert input_summary(tmp_path)["in_loop_cpu"] == "not measured"  # the old GPU record
    assert set(input_summary(tmp_path / "none").values()) == {"not measured"}
