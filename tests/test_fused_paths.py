"""mixer_lib.fused_paths: the GPU records of the fused inference paths read as decisions on
their defaults, from synthetic records (GPU and CPU) and the committed ones."""

from __future__ import annotations

import json

import pytest

from mixer_lib.fused_paths import (
    POINTERS_MODEL,
    TMA_MODEL,
    UNFUSED_GELU,
    current_form_timed,
    gelu_epilogue,
    main,
    recommendations,
    status,
    tma_against_vit,
    tma_form,
)
from mixer_lib.model import MODEL_FORM
from mixer_lib.products import VIT

GPU = {"device": "NVIDIA H200", "date": "2026-12-01T10:00:00+00:00", "git_commit": "d" * 40}
CPU = {"device": "cpu (x86_64, 2 cores)", "date": "2026-12-02T10:00:00+00:00",
       "git_commit": "e" * 40}


def write(folder, name, record):
    (folder / name).write_text(json.dumps(record))


def forms_record(env, rates: dict[str, float], bf16w: dict[str, float] | None = None):
    rows = [{"model": m, "dtype": "bf16", "mode": "eager", "batch": 128, "infer_img_s": r}
            for m, r in rates.items()]
    rows += [{"model": m, "dtype": "bf16w", "mode": "eager", "batch": 128, "infer_img_s": r}
             for m, r in (bf16w or {}).items()]
    return {"preset": "perf-gpu-forms", "model_form": MODEL_FORM, "environment": env,
            "rows": rows}  # as benchmarks/throughput.py writes it: the batch in the rows


def token_record(env, vs_tanh=None, vs_exact=None, tma_diff=None, ptr_diff=0.08):
    record = {"environment": env, "check": {"Mixer-B/16 bf16": {"fused_vs_float32": ptr_diff}}}
    if vs_tanh is not None:
        record["dense_gelu_float32"] = {"vs_tanh": vs_tanh, "vs_exact": vs_exact}
    if tma_diff is not None:
        record["check"]["Mixer-B/16 bf16 tma"] = {"fused_vs_float32": tma_diff}
    return record


def configs_record(env, tma_tflops=(300.0,), pointer_tflops=148.0, failed=0):
    results = [{"config": ["channels", 128, 64, 8, 2], "max_abs_diff": 0.02, "ms": 0.2,
                "tflops": pointer_tflops}]
    results += [{"config": ["tma", 128, 64, 8, stages], "max_abs_diff": 0.02, "ms": 0.1,
                 "tflops": t} for stages, t in enumerate(tma_tflops, 1)]
    results += [{"config": ["tma", 64, 64, 4, 1], "error": "illegal memory access"}] * failed
    return {"environment": env, "results": results}


def test_without_gpu_records_nothing_is_decided_and_the_sentences_say_not_yet(tmp_path):
    lines = recommendations(tmp_path)
    assert "-> not decided (fused_dense_gelu stays True)" in lines[2]
    assert "-> not decided (token_kernel_form stays 'tma')" in lines[-1]
    text = status(tmp_path)
    assert text["fp_form"] == "No GPU has timed this model yet"
    assert text["fp_gelu"].count("not yet") == 2 and text["fp_tma"].count("not yet") == 3
    assert text["fp_tma"].endswith("The default is the tma form "
                                   "(MixerConfig.token_kernel_form)")


def test_records_made_on_a_cpu_decide_nothing(tmp_path):
    write(tmp_path, "benchmark-perf-gpu-forms-cpu.json",
          forms_record(CPU, {"Mixer-B/16": 1.0, TMA_MODEL: 2.0, UNFUSED_GELU: 0.5}))
    write(tmp_path, "benchmark-token-mixing-cpu.json",
          token_record(CPU, vs_tanh=1e-7, vs_exact=5e-4, tma_diff=0.08))
    write(tmp_path, "benchmark-token-kernel-configs-cpu.json", configs_record(CPU))
    assert all("not decided" in line for line in recommendations(tmp_path) if "->" in line)


def test_a_tanh_gelu_that_pays_is_supported_and_a_faster_close_tma_form_too(tmp_path):
    """The GELU epilogue judged with bf16 weights (where it applies: not under autocast,
    where it is slower here); the TMA form against the pointer form's named row."""
    write(tmp_path, "benchmark-perf-gpu-forms-NVIDIA-H200.json", forms_record(
        GPU, {"Mixer-B/16": 1200.0, POINTERS_MODEL: 1000.0, TMA_MODEL: 1200.0,
              UNFUSED_GELU: 1250.0},
        bf16w={"Mixer-B/16": 1300.0, POINTERS_MODEL: 1313.0, TMA_MODEL: 1300.0,
               UNFUSED_GELU: 1170.0}))
    write(tmp_path, "benchmark-token-mixing-NVIDIA-H200.json",
          token_record(GPU, vs_tanh=9.5e-7, vs_exact=4.9e-4, tma_diff=0.09))
    write(tmp_path, "benchmark-token-kernel-configs-NVIDIA-H200.json",
          configs_record(GPU, tma_tflops=(250.0, 296.0), failed=1))
    gelu = gelu_epilogue(tmp_path)
    assert gelu["agrees"] is True and gelu["ratio"] == pytest.approx(1300 / 1170)
    assert gelu["speed"].startswith("bf16 autocast 0.96x, slower, bf16 weights 1.11x, faster")
    assert gelu["check"].startswith("the tanh GELU to float32 rounding: largest difference "
                                    "9.5e-07 from the tanh GELU and 4.9e-04 from the exact")
    tma = tma_form(tmp_path)
    assert tma["ratio"] == pytest.approx(1.2) and tma["close"] is True
    assert tma["model"] == ("bf16 autocast 1.20x, faster, bf16 weights 0.99x, the same within "
                            "noise (H200, 2026-12-01, commit ddddddd, batch 128)")
    assert tma["alone"].startswith("its fastest shape (128, 64, 8, 2) ran at 296 TFLOP/s "
                                   "against the pointer form's 148 (2.00x, faster;")
    assert "1 of 3 TMA shapes failed (first: illegal memory access)" in tma["alone"]
    lines = recommendations(tmp_path)
    assert "-> supported: fused_dense_gelu=True (now True)" in lines[2]
    assert "-> supported: token_kernel_form='tma' (now 'tma')" in lines[-1]


@pytest.mark.parametrize("vs_tanh, words", [
    (3e-4, "closer to the tanh GELU than to the exact one, but not to float32 rounding"),
    (6e-4, "not the tanh GELU")])
def test_a_gelu_that_is_not_tanh_to_rounding_is_not_supported(tmp_path, vs_tanh, words):
    write(tmp_path, "benchmark-perf-gpu-forms-NVIDIA-H200.json",
          forms_record(GPU, {}, bf16w={"Mixer-B/16": 1000.0, UNFUSED_GELU: 900.0}))
    write(tmp_path, "benchmark-token-mixing-NVIDIA-H200.json",
          token_record(GPU, vs_tanh=vs_tanh, vs_exact=4.5e-4))
    assert gelu_epilogue(tmp_path)["check"].startswith(words + ":")
    assert "-> not supported: fused_dense_gelu=False (now True)" in recommendations(tmp_path)[2]


def test_a_gelu_epilogue_that_slows_the_model_is_not_supported(tmp_path):
    write(tmp_path, "benchmark-perf-gpu-forms-NVIDIA-H200.json",
          forms_record(GPU, {"Mixer-B/16": 1100.0, UNFUSED_GELU: 1000.0},
                       bf16w={"Mixer-B/16": 900.0, UNFUSED_GELU: 1000.0}))
    write(tmp_path, "benchmark-token-mixing-NVIDIA-H200.json",
          token_record(GPU, vs_tanh=1e-6, vs_exact=5e-4))
    assert "bf16 weights 0.90x, slower" in gelu_epilogue(tmp_path)["speed"]
    assert "-> not supported" in recommendations(tmp_path)[2]


@pytest.mark.parametrize("tma_rate, tma_diff", [(1010.0, 0.08), (1200.0, 0.2)])
def test_the_pointer_form_stays_unless_tma_is_clearly_faster_and_as_close(tmp_path, tma_rate,
                                                                         tma_diff):
    write(tmp_path, "benchmark-perf-gpu-forms-NVIDIA-H200.json",
          forms_record(GPU, {POINTERS_MODEL: 1000.0, TMA_MODEL: tma_rate}))
    write(tmp_path, "benchmark-token-mixing-NVIDIA-H200.json", token_record(GPU, tma_diff=tma_diff))
    assert "-> not supported: token_kernel_form='pointers'" in recommendations(tmp_path)[-1]


def test_in_a_record_of_an_earlier_form_the_models_own_row_is_the_pointer_form(tmp_path):
    """Made while the pointer form was the default (model form gemm-stem-dense-gelu, as the
    H200 records of 2f7240f): ``Mixer-B/16`` is the pointer form's row; a record of today's
    form without the pointer form's row compares nothing."""
    record = forms_record(GPU, {"Mixer-B/16": 1000.0, TMA_MODEL: 1150.0})
    write(tmp_path, "benchmark-perf-gpu-forms-NVIDIA-H200.json",
          {**record, "model_form": "gemm-stem-dense-gelu"})
    assert tma_form(tmp_path)["ratio"] == pytest.approx(1.15)
    write(tmp_path, "benchmark-perf-gpu-forms-NVIDIA-H200.json", record)
    assert tma_form(tmp_path)["ratio"] is None and tma_form(tmp_path)["model"] == "not yet"


def test_a_form_that_failed_in_the_model_on_the_gpu_is_not_supported(tmp_path):
    record = forms_record(GPU, {"Mixer-B/16": 1000.0, UNFUSED_GELU: 900.0})
    record["failed"] = [{"what": f"round 1: {TMA_MODEL} bf16 eager batch 128",
                         "error": "RuntimeError: CUDA error: an illegal memory access"}]
    write(tmp_path, "benchmark-perf-gpu-forms-NVIDIA-H200.json", record)
    tma = tma_form(tmp_path)
    assert tma["failed"] and tma["model"].startswith(
        "1 measurement(s) failed (first: RuntimeError: CUDA error: an illegal memory access)")
    assert gelu_epilogue(tmp_path)["failed"] is False  # the failure named the TMA model only
    assert "-> not supported (it failed on the GPU): token_kernel_form='pointers'" in \
        recommendations(tmp_path)[-1]


def test_a_tma_check_that_failed_on_the_gpu_is_not_supported_whatever_older_ones_said(
        tmp_path):
    """The newest GPU token-mixing record lists Mixer-B/16's TMA check under ``failed`` (its
    child process faulted): the form is not supported, though an older record checked it
    close and the model with it was faster."""
    write(tmp_path, "benchmark-perf-gpu-forms-NVIDIA-H200.json",
          forms_record(GPU, {POINTERS_MODEL: 1000.0, TMA_MODEL: 1200.0}))
    write(tmp_path, "benchmark-token-mixing-NVIDIA-H200-old.json",
          token_record(dict(GPU, date="2026-11-30T10:00:00+00:00"), tma_diff=0.08))
    newer = token_record(GPU)
    newer["failed"] = [{"what": "check Mixer-B/16 bf16 tma",
                        "error": "not reached: RuntimeError: CUDA error: an illegal memory "
                                 "access was encountered"}]
    write(tmp_path, "benchmark-token-mixing-NVIDIA-H200.json", newer)
    tma = tma_form(tmp_path)
    assert tma["failed"] and tma["check"].startswith(
        "Mixer-B/16's check failed: not reached: RuntimeError: CUDA error")
    assert "-> not supported (it failed on the GPU): token_kernel_form='pointers'" in \
        recommendations(tmp_path)[-1]
    newer["failed"] = []  # without the failure, the older check stands
    write(tmp_path, "benchmark-token-mixing-NVIDIA-H200.json", newer)
    assert "-> supported: token_kernel_form='tma'" in recommendations(tmp_path)[-1]


def test_whether_todays_form_was_timed_reads_the_newest_gpu_record(tmp_path):
    earlier = {"preset": "perf-gpu", "model_form": "bsc-token-kernel", "environment": GPU,
               "rows": []}
    write(tmp_path, "benchmark-perf-gpu-NVIDIA-H200.json", earlier)
    assert current_form_timed(tmp_path).startswith(
        f"The current form, {MODEL_FORM}, has not been timed on a GPU as a whole yet: the "
        "newest GPU record (H200,")
    assert current_form_timed(tmp_path).endswith("is of the earlier form bsc-token-kernel")
    write(tmp_path, "benchmark-perf-gpu-cpu.json",
          {**earlier, "model_form": MODEL_FORM, "environment": CPU})  # a CPU's: not a GPU's
    assert current_form_timed(tmp_path).startswith("The current form, ")
    write(tmp_path, "benchmark-perf-gpu-forms-NVIDIA-H200.json",
          forms_record({**GPU, "date": "2026-12-03"}, {"Mixer-B/16": 1.0}))
    assert current_form_timed(tmp_path) == ("The current form was timed on a GPU: H200, "
                                            "2026-12-03, commit ddddddd (perf-gpu-forms)")


def test_the_committed_records_give_a_line_per_default_and_the_command_prints_them(capsys):
    lines = recommendations()
    assert sum("->" in line for line in lines) == 2
    assert main([]) == 0 and capsys.readouterr().out.splitlines() == lines
    assert set(status()) == {"fp_form", "fp_gelu", "fp_tma", "fp_tma_vit"}


def test_the_command_refuses_a_folder_that_is_not_there(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "nowhere")])
    assert stop.value.code == 2
    assert "nowhere is not a folder of records" in capsys.readouterr().err


def test_the_tma_form_against_vit_gives_each_dtypes_ratio_and_share_of_the_peak(tmp_path):
    assert tma_against_vit(tmp_path) == "not measured"
    record = forms_record(GPU, {TMA_MODEL: 1300.0, VIT: 1000.0}, bf16w={TMA_MODEL: 1500.0})
    record["rows"][0]["infer_tflops"] = 350.0
    record |= {"matmul_peak_tflops": 700.0,  # the highest of the run's bf16 measurements
               "matmul_peak_tflops_by_dtype": {"bf16": 650.0, "bf16w": 680.0}}
    write(tmp_path, "benchmark-perf-gpu-forms-NVIDIA-H200.json", record)
    assert tma_against_vit(tmp_path) == (
        "bf16 autocast 1.30x at 50.0 % of the bf16 matmul peak (H200, 2026-12-01, commit "
        "ddddddd, perf-gpu-forms, eager, batch 128)")  # no ViT row with bf16 weights
