"""The benchmark script keeps working (tiny size; no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import re
import statistics
import sys

import pytest

from mixer_lib.model import MODEL_FORM
from tests.conftest import REPO


def load_script(name: str):
    """Import ``benchmarks/<name>.py`` as module ``name`` (registered: dataclasses need it)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    yield load_script("throughput")
    sys.modules.pop("throughput", None)


def test_throughput_benchmark_runs_at_tiny_size(bench, tmp_path, capsys):
    rows = bench.main(["--preset", "tiny", "--device", "cpu", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "Mixer-S/32" in out and "timm:mixer_s32_224" in out
    assert {r.model for r in rows} == {"Mixer-S/32", "timm:mixer_s32_224"}
    ours = next(r for r in rows if r.model == "Mixer-S/32")
    assert ours.gflops_fwd > 0 and ours.infer_img_s > 0 and ours.train_img_s > 0
    record = json.loads(next(tmp_path.glob("benchmark-tiny-*.json")).read_text())
    assert record["environment"]["torch"] and len(record["rows"]) == 2
    assert record["model_form"] == MODEL_FORM  # what the ledger reads to order records
    assert all(r["first_infer_s"] > 0 and r["first_train_s"] > 0 for r in record["rows"])
    assert record["complete"] and record["measured"] == "2 of 2"


def measuring(bench, monkeypatch, calls: list | None = None, cut: str | None = None,
              fail: str | None = None) -> None:
    """``bench.measure`` as it is, with each model it measures appended to ``calls``,
    stopped at model ``cut`` as the time limit's signal would stop it (KeyboardInterrupt),
    and raising at model ``fail`` as a GPU out of memory would."""
    real = getattr(bench.measure, "__wrapped__", bench.measure)

    def measure(name, *args):
        if calls is not None:
            calls.append(name)
        if name == cut:
            raise KeyboardInterrupt
        if name == fail:
            raise RuntimeError("CUDA out of memory")
        return real(name, *args)

    measure.__wrapped__ = real
    monkeypatch.setattr(bench, "measure", measure)


def test_throughput_record_is_written_as_it_goes_and_never_overwritten(bench, tmp_path,
                                                                        monkeypatch):
    """A run cut short keeps the configurations it measured (``complete`` false); a second
    run moves the earlier record aside under its commit's name instead of replacing it."""
    measuring(bench, monkeypatch, cut="timm:mixer_s32_224")
    with pytest.raises(KeyboardInterrupt):
        bench.main(["--preset", "tiny", "--device", "cpu", "--out", str(tmp_path)])
    [path] = tmp_path.glob("benchmark-tiny-*.json")
    cut = json.loads(path.read_text())
    assert not cut["complete"] and cut["measured"] == "1 of 2"
    assert [r["model"] for r in cut["rows"]] == ["Mixer-S/32"]
    measuring(bench, monkeypatch)
    bench.main(["--preset", "tiny", "--device", "cpu", "--out", str(tmp_path)])
    commit = cut["environment"]["git_commit"][:7]
    kept = path.with_name(f"{path.stem}-{commit}.json")
    assert json.loads(kept.read_text()) == cut  # the cut-short record, as it was
    assert json.loads(path.read_text())["complete"]


def test_resume_measures_only_what_a_cut_record_lacks(bench, tmp_path, monkeypatch, capsys):
    """``--resume`` continues a record a time limit cut (same preset, device, commit and
    plan): only the configurations it lacks are measured, its rows and peaks stand, it
    says when it was resumed; a configuration that failed stays failed, not measured again;
    a complete record is left as it is."""
    from mixer_lib.throughputs import provenance_lines

    monkeypatch.setenv("MIXER_GIT_COMMIT", "0123456789abcdef")
    calls = []
    tiny = ["--preset", "tiny", "--device", "cpu", "--out", str(tmp_path)]
    measuring(bench, monkeypatch, calls, cut="timm:mixer_s32_224")
    with pytest.raises(KeyboardInterrupt):
        bench.main(tiny)
    [path] = tmp_path.glob("benchmark-tiny-*.json")
    cut = json.loads(path.read_text())
    assert cut["measured"] == "1 of 2" and cut["configurations"] == [
        ["Mixer-S/32", "fp32", "eager", 2], ["timm:mixer_s32_224", "fp32", "eager", 2]]
    calls.clear()
    measuring(bench, monkeypatch, calls)
    bench.main([*tiny, "--resume"])
    assert calls == ["timm:mixer_s32_224"]
    assert list(tmp_path.iterdir()) == [path]  # continued in place, nothing set aside
    done = json.loads(path.read_text())
    assert done["complete"] and done["rows"][0] == cut["rows"][0]
    assert [r["model"] for r in done["rows"]] == ["Mixer-S/32", "timm:mixer_s32_224"]
    [when] = done["resumed"]
    assert (when["measured_before"], when["measured_after"]) == ("1 of 2", "2 of 2")
    [line] = provenance_lines([done])
    assert line.endswith(f", resumed {when['date'][:16]} after 1 of 2")
    calls.clear()
    bench.main([*tiny, "--resume"])  # complete: nothing left to measure, nothing rewritten
    assert calls == [] and json.loads(path.read_text()) == done
    # another commit's record is set aside and the run starts anew, saying why
    monkeypatch.setenv("MIXER_GIT_COMMIT", "fedcba9876543210")
    bench.main([*tiny, "--resume"])
    assert calls == ["Mixer-S/32", "timm:mixer_s32_224"]
    assert "not resuming" in capsys.readouterr().err
    assert json.loads(path.with_name(f"{path.stem}-0123456.json").read_text()) == done


def test_resume_keeps_a_failed_configuration_failed(bench, tmp_path, monkeypatch):
    """A configuration that raised in the cut run is not measured again on resume: its
    failure stays in the record, and the run still ends with a status that names it."""
    monkeypatch.setenv("MIXER_GIT_COMMIT", "0123456789abcdef")
    calls = []
    tiny = ["--preset", "tiny", "--device", "cpu", "--out", str(tmp_path)]
    measuring(bench, monkeypatch, calls, cut="timm:mixer_s32_224", fail="Mixer-S/32")
    with pytest.raises(KeyboardInterrupt):
        bench.main(tiny)
    calls.clear()
    measuring(bench, monkeypatch, calls)
    with pytest.raises(SystemExit, match="1 of 2 measurements failed.*Mixer-S/32"):
        bench.main([*tiny, "--resume"])
    assert calls == ["timm:mixer_s32_224"]
    record = json.loads(next(tmp_path.glob("benchmark-tiny-*.json")).read_text())
    [failed] = record["failed"]
    assert failed["config"] == ["Mixer-S/32", "fp32", "eager", 2]
    assert [r["model"] for r in record["rows"]] == ["timm:mixer_s32_224"]
    assert not record["complete"]


@pytest.mark.parametrize("change, reason", [
    (["--models", "Mixer-S/32"], "its plan of configurations differs"),
    (["--rounds", "2"], "resuming needs one round"),
    (["--preset", "cpu-small"], None),  # another preset: another file, nothing to resume
])
def test_resume_refuses_a_record_of_another_plan(bench, tmp_path, monkeypatch, capsys,
                                                  change, reason):
    """A record whose plan differs from this run's, or a run of several rounds, is not
    continued: the earlier record is set aside and the run starts anew."""
    monkeypatch.setenv("MIXER_GIT_COMMIT", "0123456789abcdef")
    measuring(bench, monkeypatch, cut="timm:mixer_s32_224")
    with pytest.raises(KeyboardInterrupt):
        bench.main(["--preset", "tiny", "--device", "cpu", "--out", str(tmp_path)])
    [path] = tmp_path.glob("benchmark-tiny-*.json")
    args = bench.argparse.Namespace(**{**bench.PRESETS["tiny"], "batch": 2})
    if reason is None:
        assert bench.resumable(path, "cpu-small", bench.torch.device("cpu"),
                               bench.plan(args), 1) is None
        assert "of preset 'tiny'" in capsys.readouterr().err
        return
    measuring(bench, monkeypatch)
    bench.main(["--preset", "tiny", "--device", "cpu", "--out", str(tmp_path), "--resume",
                "--repeats", "1", *change])
    assert f"not resuming {path.name}: {reason}" in capsys.readouterr().err
    assert path.with_name(f"{path.stem}-0123456.json").exists()


def test_perf_gpu_plan_measures_each_batch_eager_first_and_compiles_last(bench):
    """The GPU preset's order: at each batch, every model eager (bf16, bf16 weights, then
    float32) before the compiled runs (ours and ViT, bf16 and bf16 weights); batch 128
    whole before 512."""
    args = bench.argparse.Namespace(**{**bench.PRESETS["perf-gpu"]})
    configs = bench.plan(args)
    assert len(configs) == len(set(configs)) == 2 * (4 * 3 + 2 * 2)
    first = [c for c in configs if c[3] == 128]
    assert configs[:len(first)] == first  # batch 128 whole first
    modes = [c[2] for c in first]
    assert modes == sorted(modes, key=["eager", "compile"].index)
    assert [c[1] for c in first if c[2] == "eager"][::4] == ["bf16", "bf16w", "fp32"]
    assert {(c[0], c[1]) for c in first if c[2] == "compile"} == {
        (m, d) for m in ("Mixer-B/16", "timm:vit_base_patch16_224") for d in ("bf16", "bf16w")}


def test_a_configuration_that_fails_is_recorded_and_the_rest_still_run(bench, tmp_path,
                                                                        monkeypatch, capsys):
    """One configuration raising (out of memory, a kernel the machine's compiler rejects) is
    listed under ``failed`` with its error; the configurations after it are measured; the
    record is not complete; the run ends with a non-zero status that names it."""
    from mixer_lib.throughputs import provenance_lines

    real = bench.measure

    def first_fails(name, *args):
        if name == "Mixer-S/32":
            raise RuntimeError("CUDA out of memory. Tried to allocate 9.00 GiB\nmore lines")
        return real(name, *args)

    monkeypatch.setattr(bench, "measure", first_fails)
    with pytest.raises(SystemExit, match="1 of 2 measurements failed.*Mixer-S/32"):
        bench.main(["--preset", "tiny", "--device", "cpu", "--out", str(tmp_path)])
    assert "Traceback" in capsys.readouterr().err
    record = json.loads(next(tmp_path.glob("benchmark-tiny-*.json")).read_text())
    assert [r["model"] for r in record["rows"]] == ["timm:mixer_s32_224"]
    assert not record["complete"] and record["measured"] == "1 of 2"
    [failed] = record["failed"]
    assert "Mixer-S/32 fp32 eager batch 2" in failed["what"]
    assert failed["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 9.00 GiB"
    [line] = provenance_lines([record])
    assert line.endswith(f"(1 of 2 measurements; {failed['what']} failed ({failed['error']}))")
    record["failed"] = []
    assert provenance_lines([record])[0].endswith("(1 of 2 measurements; cut short)")
    processor = record["environment"]["processor"]  # where the CPU's timings were made
    assert not processor or f"{record['environment']['device']} on {processor}, batch" in line


def test_model_specs_parse_config_overrides(bench):
    assert bench.parse_spec("Mixer-B/16") == ("Mixer-B/16", {})
    assert bench.parse_spec("Mixer-B/16@gelu=exact,grad_checkpointing=true") == (
        "Mixer-B/16", {"gelu": "exact", "grad_checkpointing": True})
    assert bench.parse_spec("Mixer-S/32@drop_rate=0.1")[1] == {"drop_rate": 0.1}
    # sizes without a default (App. C's widened token mixing) and the resolution
    assert bench.parse_spec("Mixer-B/16@img_size=448,tokens_mlp_dim=1536")[1] == {
        "img_size": 448, "tokens_mlp_dim": 1536}
    wide = bench.build("Mixer-S/32@img_size=64,tokens_mlp_dim=128", 224)
    assert wide.cfg.img_size == 64 and wide.cfg.tokens_mlp_dim == 128
    model = bench.build("Mixer-S/32@gelu=exact", 64)
    assert model.cfg.gelu == "exact" and model.cfg.img_size == 64
    with pytest.raises(ValueError, match="MixerConfig field"):
        bench.parse_spec("Mixer-B/16@tokens=3")
    with pytest.raises(ValueError, match="key=value"):
        bench.parse_spec("Mixer-B/16@einops")


def test_training_loop_benchmark_reports_both_rates_in_one_run(cifar_root, tmp_path, capsys):
    """Tiny size on the real data: the record holds the loop's and the model-alone rates and
    their ratio (computed, not asserted: timings are never asserted)."""
    root = cifar_root
    script = load_script("training_loop")
    try:
        assert script.main(["--data-root", str(root), "--updates", "24", "--batch", "16",
                            "--train-limit", "1000", "--segments", "4",
                            "--out", str(tmp_path)]) == 0
    finally:
        sys.modules.pop("training_loop", None)
    record = json.loads(next(tmp_path.glob("benchmark-loop-*.json")).read_text())
    segments = record["loop_fraction_per_segment"]
    assert len(segments) == record["segments"] == 4
    between = record["model_alone_img_s_between"]
    assert len(between) == 5 and record["loop_img_s"] > 0
    for k, (loop, fraction) in enumerate(zip(record["loop_img_s_per_segment"], segments,
                                                 strict=True)):
        assert fraction == pytest.approx(loop / max(between[k], between[k + 1]))
    assert record["loop_fraction_of_model_alone"] == pytest.approx(statistics.median(segments))
    times = record["seconds_per_update"]
    assert {"data_loader_alone", "data_loader_alone_sample_by_sample", "forward",
            "optimizer_and_clip", "sample_seeding_cpu_generator"} <= set(times)
    assert record["rate_method"] == "window-median" and record["window_updates"] >= 1
    assert 0 < record["loop_fraction_of_matmul_peak"]
    assert "% of the model alone" in capsys.readouterr().out


def test_input_pipeline_benchmark_measures_loader_loop_and_model_in_one_run(cifar_root,
                                                                            tmp_path, capsys):
    """Stand-in JPEGs of ImageNet size made from real images of several classes; the record
    holds one worker's rate, the loader's per worker count, the model alone (the recipe's
    update, before and after the loops), the fine-tuning loop itself for each decode setting
    against it, and the workers it needs; a second run keeps the first's record."""
    script = load_script("input_pipeline")
    argv = ["--data-root", str(cifar_root), "--images", "8", "--batch", "4", "--batches", "1",
            "--workers", "0,1", "--variant", "Mixer-S/32", "--img-size", "64",
            "--loop-updates", "6", "--loop-window", "2", "--loop-workers", "1",
            "--out", str(tmp_path)]
    try:
        assert script.main(argv) == 0
        first = next(tmp_path.glob("benchmark-input-*.json"))
        earlier = first.read_bytes()
        capsys.readouterr()
        for bad, says in ((["--images", "2", "--batch", "4"], "--images >= --batch"),
                          (["--loop-decode", "gpu"], "--loop-decode takes cpu and/or device"),
                          (["--loop-updates", "4", "--loop-window", "2"], ">= 3 windows"),
                          (["--loop-workers", "two"], "--loop-workers takes comma-separated"),
                          (["--loop-workers", "-1"], "must be >= 0")):
            with pytest.raises(SystemExit):
                script.main(bad)
            assert says in capsys.readouterr().err
        assert script.main([*argv, "--loop-decode", "device", "--workers", "0"]) == 0
    finally:
        sys.modules.pop("input_pipeline", None)
    kept = [p for p in tmp_path.glob("benchmark-input-*.json") if p != first]
    assert len(kept) == 1 and kept[0].read_bytes() == earlier  # set aside, byte for byte
    record = json.loads(earlier)
    assert record["images"].startswith("real CIFAR-10") and record["image_size"] == [500, 375]
    assert set(record["loader_img_s_by_workers"]) == {"0", "1"}
    assert set(record["loop_cpu_by_workers"]) == {"1"}
    assert record["loop_cpu_by_workers"]["1"]["loop_img_s"] > 0
    # a CPU run hands float32 pixels over; the uint8 form a GPU gets is checked all the same
    assert record["loader_pixels"] == "float32" and record["uint8_scaling_same_bits"] is True
    assert record["one_worker_img_s"] > 0 and record["model_alone_train_img_s"] > 0
    assert record["model_alone_train_img_s"] == max(record["model_alone_img_s_before_after"])
    assert record["workers_needed"] == -(-record["model_alone_train_img_s"]
                                         // record["one_worker_img_s"])
    assert set(record["device_decode_img_s_by_workers"]) == {"0", "1"}  # the CPU as device
    assert min(record["device_decode_img_s_by_workers"].values()) > 0
    assert set(record["loop"]) == {"cpu", "device"}
    for loop in record["loop"].values():
        assert len(loop["window_img_s"]) == 2  # 3 windows of 2 updates, the first left out
        assert loop["fraction_of_model_alone"] == pytest.approx(
            loop["loop_img_s"] / record["model_alone_train_img_s"])
        assert 0.2 < loop["fraction_of_model_alone"] < 2  # the same update, data or not
    assert set(json.loads(first.read_text())["loop"]) == {"device"}
    out = capsys.readouterr().out
    assert "worker(s) of this CPU" in out and "% of the model alone" in out


def test_input_pipeline_goes_on_past_a_measurement_that_fails(cifar_root, tmp_path,
                                                             monkeypatch):
    """``decode='device'`` failing (a GPU whose decoder cannot run) is listed under ``failed``
    with its error; the loader, the model alone and the loops are still measured and
    recorded; the run ends with a non-zero status that names it."""
    script = load_script("input_pipeline")
    try:
        def no_decoder(*args):
            raise RuntimeError("nvjpeg: not supported on this device\nsecond line")

        monkeypatch.setattr(script, "device_decode_img_s", no_decoder)
        with pytest.raises(SystemExit, match=r"1 measurement\(s\) failed.*decode='device', "
                                             r"1 worker\(s\)"):
            script.main(["--data-root", str(cifar_root), "--images", "4", "--batch", "4",
                         "--batches", "1", "--workers", "1", "--variant", "Mixer-S/32",
                         "--img-size", "32", "--loop-decode", "cpu", "--loop-updates", "3",
                         "--loop-window", "1", "--out", str(tmp_path)])
    finally:
        sys.modules.pop("input_pipeline", None)
    record = json.loads(next(tmp_path.glob("benchmark-input-*.json")).read_text())
    assert record["failed"] == [{"what": "decode='device', 1 worker(s)",
                                 "error": "RuntimeError: nvjpeg: not supported on this device"}]
    assert record["device_decode_img_s_by_workers"] == {}
    assert set(record["loader_img_s_by_workers"]) == {"1"} and record["loop"]["cpu"]
    assert len(record["model_alone_img_s_before_after"]) == 2


def test_standins_take_their_sources_from_every_class(cifar_root, tmp_path):
    from PIL import Image

    script = load_script("input_pipeline")
    try:
        sources = script.standin_sources(str(cifar_root))
        made = script.make_standins(tmp_path / "real", 20, str(cifar_root))
        smooth = script.make_standins(tmp_path / "smooth", 4, None)
        assert script.standin_sources(None) == []
    finally:
        sys.modules.pop("input_pipeline", None)
    assert len({p.parent.name for p in sources[:10]}) == 10  # every class in turn
    assert sources[10].parent == sources[0].parent and sources[10] != sources[0]
    train = sorted((tmp_path / "real" / "train").glob("*/*.jpg"))
    assert made.startswith("real CIFAR-10") and smooth.startswith("smooth random")
    assert len(train) == 20 and all(Image.open(p).size == (500, 375) for p in train[:3])
    assert len(list((tmp_path / "real" / "test").glob("*/*.jpg"))) == 8  # for the loop


def test_perf_preset_compares_ours_with_its_earlier_form(bench, tmp_path):
    """The earlier form (legacy: strided tokens, weight expanded per sample) computes the same
    function; the perf record holds ours / peer ratios from one run."""
    import torch

    model = bench.build("Mixer-S/32", 64).eval()
    old = bench.legacy(bench.build("Mixer-S/32", 64)).eval()
    old.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(old(x), model(x), rtol=1e-5, atol=1e-5)
    bench.main(["--preset", "perf-cpu", "--models", "Mixer-B/16", "legacy:Mixer-B/16",
                "--batch", "2", "--repeats", "1", "--modes", "eager", "--out", str(tmp_path)])
    record = json.loads(next(tmp_path.glob("benchmark-perf-cpu-*.json")).read_text())
    (ratio,) = record["ratios"]
    assert ratio["peer"] == "legacy:Mixer-B/16" and ratio["inference"] > 0
    assert ratio["training"] > 0 and record["matmul_peak_tflops_by_dtype"]["fp32"] > 0
    assert all(r["infer_tflops"] > 0 for r in record["rows"])
    steps = [r["batch"] / r["train_img_s"] for r in record["rows"]]  # seconds
    assert all(0 < r["train_matmul_s"] < 2 * step  # the products: most of a step, not more
               for r, step in zip(record["rows"], steps, strict=True))


def test_bf16_weights_are_measured_for_inference_only(bench, tmp_path):
    """``bf16w``: the model and its input in bf16 without autocast, inference only."""
    bench.main(["--preset", "perf-cpu", "--models", "Mixer-B/16", "--batch", "1",
                "--repeats", "1", "--rounds", "1", "--modes", "eager", "--dtypes", "bf16w",
                "--out", str(tmp_path)])
    record = json.loads(next(tmp_path.glob("benchmark-perf-cpu-*.json")).read_text())
    (row,) = record["rows"]
    assert row["dtype"] == "bf16w" and row["infer_img_s"] > 0 and row["train_img_s"] is None
    assert record["matmul_peak_tflops_by_dtype"]["bf16w"] > 0


def test_perf_on_gpu_script_fits_in_eight_minutes_by_default():
    """The issue's bound: the default stages' limits add up to at most the whole script's
    limit (TOTAL_LIMIT), which is at most 8 minutes; the resumed presets only get what the
    stages before them left of it."""
    text = (REPO / "scripts" / "perf-on-gpu.sh").read_text()
    limits = {k: int(v) for k, v in re.findall(r"\$\{(\w+_LIMIT):-(\d+)\}", text)}
    stages = ("CONFIGS_LIMIT", "TOKEN_LIMIT", "FORMS_LIMIT", "PERF_LIMIT", "INPUT_LIMIT")
    assert sum(limits[k] for k in stages) <= limits["TOTAL_LIMIT"] <= 8 * 60
    assert "deadline - SECONDS" in text and "--resume" in text


def test_perf_on_gpu_script_runs_whole_on_the_cpu(cifar_root, tmp_path):
    """scripts/perf-on-gpu.sh as the GPU machine runs it (in a copy of the repository, so
    its records land there), here on the CPU at tiny sizes through PERF_ARGS and INPUT_ARGS:
    both records and both logs come back in $OUT and the status is 0; cut short by its
    limits, it says so in its status and still returns the logs."""
    import os
    import shutil
    import subprocess

    root = tmp_path / "repo"
    for part in ("mixer_lib", "benchmarks", "scripts"):
        shutil.copytree(REPO / part, root / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PY": sys.executable, "OUT": str(out), "TMPDIR": str(tmp_path),
           "MIXER_DATA_ROOT": str(cifar_root), "PYTHONPATH": "", "TRITON_INTERPRET": "1",
           "MIXER_GIT_COMMIT": "0123456789abcdef",
           "CONFIGS_ARGS": "--device cpu --dtype fp16 --variant Mixer-T/4 --batch 1 "
                           "--configs 2",
           "TOKEN_ARGS": "--device cpu --variant Mixer-T/4 --img-size 24 --batch 2 "
                         "--repeats 1 --warmup 0",
           "PERF_ARGS": "--device cpu --models Mixer-S/32 legacy:Mixer-S/32 --batch 2 "
                        "--repeats 1 --modes eager --dtypes fp32",
           "INPUT_ARGS": "--device cpu --images 8 --batch 4 --batches 1 --workers 0 "
                         "--variant Mixer-S/32 --img-size 64 --loop-updates 6 "
                         "--loop-window 2 --loop-workers 0"}
    (root / "results" / "perf").mkdir(parents=True)
    earlier = root / "results" / "perf" / "benchmark-input-cpu.json"
    earlier.write_text(json.dumps({"environment": {"git_commit": "0123456789"}}))
    script = str(root / "scripts" / "perf-on-gpu.sh")
    done = subprocess.run(["bash", script], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    # last, what the records support for the fused paths' defaults: a CPU's decide nothing
    verdict = done.stdout.split("== the fused inference paths' defaults")[-1]
    assert "-> not decided (fused_dense_gelu stays True)" in verdict
    assert "-> not decided (token_kernel_form stays 'tma')" in verdict
    assert {p.name for p in out.iterdir()} == {
        "benchmark-token-kernel-configs-cpu.json", "benchmark-token-mixing-cpu.json",
        "benchmark-perf-gpu-forms-cpu.json", "benchmark-perf-gpu-cpu.json",
        "benchmark-input-cpu.json", "token-kernel-configs.log", "token-mixing.log",
        "perf-gpu-forms.log", "perf-gpu.log", "input-on-gpu.log"}
    configs = json.loads((out / "benchmark-token-kernel-configs-cpu.json").read_text())
    assert [r["config"] for r in configs["results"]] == [["channels", 128, 64, 8, 2]]
    perf = json.loads((out / "benchmark-perf-gpu-cpu.json").read_text())
    assert perf["complete"] and {r["model"] for r in perf["rows"]} == {
        "Mixer-S/32", "legacy:Mixer-S/32"}
    forms = json.loads((out / "benchmark-perf-gpu-forms-cpu.json").read_text())
    assert forms["preset"] == "perf-gpu-forms" and all(r["train_img_s"] is None
                                                    for r in forms["rows"])
    record = json.loads((out / "benchmark-input-cpu.json").read_text())
    assert set(record["loop"]) == {"cpu", "device"} and set(record["loop_cpu_by_workers"]) == {
        "0"}
    # the record set aside stays in the copy, and only the new one comes back
    assert (root / "results" / "perf" / "benchmark-input-cpu-0123456.json").exists()
    assert not (REPO / "results" / "perf" / "benchmark-perf-gpu-cpu.json").exists()
    cut = tmp_path / "cut"
    cut.mkdir()
    done = subprocess.run(["bash", script], capture_output=True, text=True, timeout=120,
                          env={**env, "OUT": str(cut), "CONFIGS_LIMIT": "1", "TOKEN_LIMIT": "1",
                               "FORMS_LIMIT": "1", "PERF_LIMIT": "1", "INPUT_LIMIT": "1",
                               "TOTAL_LIMIT": "5"})
    assert done.returncode == 124  # timeout's status: the first limit reached
    assert {"token-kernel-configs.log", "token-mixing.log", "perf-gpu-forms.log", "perf-gpu.log",
            "input-on-gpu.log"} <= {p.name for p in cut.iterdir()}
    assert "== perf-gpu-forms stays cut short" in done.stdout  # no time left to resume
    # a preset cut by its limit runs again (--resume) with what the whole limit leaves,
    # and completed there it no longer counts as cut
    again = tmp_path / "again"
    again.mkdir()
    (root / "results" / "perf" / "benchmark-perf-gpu-cpu.json").unlink()  # the first run's
    done = subprocess.run(["bash", script], capture_output=True, text=True, timeout=300,
                          env={**env, "OUT": str(again), "PERF_STAGES": "perf",
                               "PERF_PRESETS": "perf-gpu", "PERF_LIMIT": "1"})
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "== perf-gpu resumed with" in done.stdout
    assert "nothing to resume" in (again / "perf-gpu-resumed.log").read_text()
    assert json.loads((again / "benchmark-perf-gpu-cpu.json").read_text())["complete"]
    products = tmp_path / "products"  # the preset left out by default, asked for by name
    products.mkdir()
    done = subprocess.run(["bash", script], capture_output=True, text=True, timeout=300,
                          env={**env, "OUT": str(products), "PERF_STAGES": "perf",
                               "PERF_PRESETS": "perf-gpu-products"})
    assert done.returncode == 0 and {p.name for p in products.iterdir()} == {
        "benchmark-perf-gpu-products-cpu.json", "perf-gpu-products.log"}
    record = json.loads((products / "benchmark-perf-gpu-products-cpu.json").read_text())
    assert all(r["infer_matmul_groups"] and r["train_matmul_groups"] for r in record["rows"])
    only = tmp_path / "only"
    only.mkdir()
    done = subprocess.run(["bash", script], capture_output=True, text=True, timeout=300,
                          env={**env, "OUT": str(only), "PERF_STAGES": "token"})
    assert done.returncode == 0 and {p.name for p in only.iterdir()} == {
        "benchmark-token-mixing-cpu.json", "token-mixing.log"}
    timed = json.loads((only / "benchmark-token-mixing-cpu.json").read_text())
    assert timed["mlp"] and timed["model"]  # TOKEN_ARGS given: the timings ran
    checks = tmp_path / "checks"  # by default (Mixer-B/16 here) the checks alone
    checks.mkdir()
    done = subprocess.run(["bash", script], capture_output=True, text=True, timeout=300,
                          env={**{k: v for k, v in env.items() if k != "TOKEN_ARGS"},
                               "OUT": str(checks), "PERF_STAGES": "token"})
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    record = json.loads((checks / "benchmark-token-mixing-cpu.json").read_text())
    assert record["mlp"] == record["model"] == {} and "dense_gelu_float32" in record


def run_token_mixing(tmp_path, batch: int, prepare=lambda script: None) -> tuple[dict, str]:
    """benchmarks/token_mixing.py on the CPU (Mixer-T/4 at 24 px, float32, one repeat), after
    ``prepare(script)``: its record and its exit message ("" when it returned)."""
    script = load_script("token_mixing")
    stopped = ""
    try:
        prepare(script)
        script.main(["--device", "cpu", "--variant", "Mixer-T/4", "--img-size", "24",
                     "--batch", str(batch), "--repeats", "1", "--warmup", "0", "--no-compile",
                     "--out", str(tmp_path)])
    except SystemExit as stop:
        stopped = str(stop)
    finally:
        sys.modules.pop("token_mixing", None)
    return json.loads((tmp_path / "benchmark-token-mixing-cpu.json").read_text()), stopped


def test_token_mixing_forms_compute_the_same_mlp_and_are_timed(tmp_path):
    """benchmarks/token_mixing.py on a tiny model in float32: every form of the token-mixing
    MLP (the model's, with the operands' roles swapped, timm's transposes, padded, ...) gives
    the model's output, each is timed alone and inside the whole model, and the record says
    which device and model it measured."""
    record, stopped = run_token_mixing(tmp_path, batch=3)
    forms = {"left", "left-bmm-add", "right", "broadcast-matmul", "transposed", "padded"}
    assert set(record["mlp"]) == forms and set(record["model"]) == forms | {"model's own"}
    assert record["shapes_B_S_C_DS"] == [3, 36, 128, 64] and record["precision"] == "float32"
    for case in record["mlp"].values():
        assert case["max_abs_diff_from_left"] < 1e-5
        assert case["forward_ms"] > 0 and case["train_ms"] > 0
    assert all(c["infer_img_s"] > 0 and c["train_img_s"] > 0 for c in record["model"].values())
    gelu = record["dense_gelu_float32"]  # on a CPU the one-call op is the exact GELU
    assert gelu["vs_exact"] < 1e-6 < 1e-4 < gelu["vs_tanh"]
    assert record["failed"] == [] and stopped == ""


def test_token_mixing_goes_on_past_a_step_that_fails(tmp_path, monkeypatch):
    """A form that raises (a kernel this machine's compiler rejects) is listed under
    ``failed`` with its error, the forms and whole-model cases after it are still measured,
    and the run ends with a non-zero status that names it."""
    def broken(*args):
        raise NotImplementedError("no kernel image is available for this device")

    record, stopped = run_token_mixing(
        tmp_path, batch=2, prepare=lambda script: monkeypatch.setitem(script.EAGER, "right",
                                                                      broken))
    assert re.fullmatch(r"2 step\(s\) failed .*: MLP right; Mixer-T/4 with right", stopped)
    assert [f["what"] for f in record["failed"]] == ["MLP right", "Mixer-T/4 with right"]
    assert all(f["error"] == "NotImplementedError: no kernel image is available for this "
               "device" for f in record["failed"])
    others = {"left", "left-bmm-add", "broadcast-matmul", "transposed", "padded"}
    assert set(record["mlp"]) == others and set(record["model"]) == others | {"model's own"}
    assert "dense_gelu_float32" in record


def test_the_tma_forms_whole_model_checks_run_in_a_child_process(monkeypatch):
    """token_mixing.checks_in_child (here through Triton's interpreter, fp16): each check's
    case comes back by name; one that raises is a failure with its error and the next ones
    still run; a child that ends before a check leaves that check failed as "not reached"."""
    import torch

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    script = load_script("token_mixing")
    try:
        cases, failures = script.checks_in_child(["Mixer-Q/9", "Mixer-T/4"], "tma", ["fp16"],
                                                 torch.device("cpu"))
        assert list(cases) == ["Mixer-T/4 fp16 tma"]
        case = cases["Mixer-T/4 fp16 tma"]
        assert case["blocks_tma"] == case["blocks"] == 4 and case["fused_vs_reference"] < 0.02
        [failed] = failures
        assert failed["what"] == "check Mixer-Q/9 fp16 tma"
        assert failed["error"].startswith("ValueError: unknown Mixer variant 'Mixer-Q/9'")
        cases, failures = script.checks_in_child(["Mixer-T/4"], "tma", ["fp16"],
                                                 torch.device("cpu"), timeout=0.01)
        assert cases == {} and failures == [{
            "what": "check Mixer-T/4 fp16 tma",
            "error": "not reached: killed after 0.01 s (its time limit)"}]
    finally:
        sys.modules.pop("token_mixing", None)


def test_token_kernel_configs_runs_every_tile_shape_in_its_own_process(tmp_path, monkeypatch,
                                                                       capsys):
    """benchmarks/token_kernel_configs.py under Triton's interpreter: one result per entry
    of CONFIGS, each within fp16 rounding of the float32 reference, in a record with its
    environment; a shape whose process fails is named with its error, the others go on."""
    from mixer_lib import token_kernel

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    script = load_script("token_kernel_configs")
    try:
        record = script.main(["--device", "cpu", "--dtype", "fp16", "--variant", "Mixer-T/4",
                              "--batch", "1", "--out", str(tmp_path), "--configs", "2,tma"])
        written = json.loads((tmp_path / "benchmark-token-kernel-configs-cpu.json")
                             .read_text())
        assert written["results"] == record["results"]
        assert [r["config"] for r in record["results"]] == [
            list(c) for c in token_kernel.CONFIGS[2:3] + token_kernel.configs_of("tma")]
        assert all(r["max_abs_diff"] < 0.01 and "ms" not in r for r in record["results"])
        assert record["environment"]["triton"]
        bad = script.main(["--device", "cpu", "--dtype", "fp16", "--variant", "Mixer-X/9",
                           "--batch", "1", "--out", "", "--configs", "0"])
        assert len(bad["results"]) == 1 and "Mixer-X/9" in bad["results"][0]["error"]
        # where TMA cannot run (an older GPU, unaligned rows) the shape says so, launching
        # nothing
        monkeypatch.setattr(token_kernel, "tma_possible", lambda *tensors: False)
        tma = token_kernel.CONFIGS.index(token_kernel.configs_of("tma")[0])
        with pytest.raises(SystemExit, match="TMA form cannot run on cpu"):
            script.one(tma, 1, "Mixer-T/4", "cpu", "fp16")
    finally:
        sys.modules.pop("token_kernel_configs", None)
    monkeypatch.delenv("TRITON_INTERPRET")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        load_script("token_kernel_configs").main(["--device", "cpu", "--out", ""])
    sys.modules.pop("token_kernel_configs", None)
    assert "set TRITON_INTERPRET=1" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--configs", "99"], "neither an index below"),
    (["--gelu", "relu"], "--gelu takes tanh,exact"),
    (["--x-dtype", "fp16"], "--x-dtype takes bf16,fp32")])
def test_token_kernel_compiled_refuses_bad_selections_before_compiling(args, message, capsys):
    script = load_script("token_kernel_compiled")
    try:
        with pytest.raises(SystemExit):
            script.main([*args, "--out", ""])
    finally:
        sys.modules.pop("token_kernel_compiled", None)
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""  # nothing compiled


def test_token_mixing_checks_name_the_variants_and_checks_only_stops_before_the_timings(
        tmp_path, capsys):
    """``--checks`` picks the whole-model checks (both forms), refusing what is not a variant
    before any work; ``--checks-only`` writes the record of the checks without timings."""
    script = load_script("token_mixing")
    try:
        assert script.checked_specs(None) == (script.CHECKED, script.CHECKED_TMA)
        assert script.checked_specs(" Mixer-B/16, Mixer-S/32@gelu=exact") == (
            ("Mixer-B/16", "Mixer-S/32@gelu=exact"),) * 2
        for wrong in ("Mixer-B/17", "Mixer-B/16@gelu=fast", " , "):
            with pytest.raises(SystemExit):
                script.main(["--device", "cpu", "--checks", wrong, "--out", str(tmp_path)])
            assert "--checks:" in capsys.readouterr().err
        assert not list(tmp_path.iterdir())
        record = script.main(["--device", "cpu", "--variant", "Mixer-T/4", "--img-size", "24",
                              "--checks", "Mixer-T/4", "--checks-only", "--out",
                              str(tmp_path)])
    finally:
        sys.modules.pop("token_mixing", None)
    written = json.loads((tmp_path / "benchmark-token-mixing-cpu.json").read_text())
    assert written["mlp"] == written["model"] == {} and written["failed"] == []
    assert "dense_gelu_float32" in written and record["variant"] == "Mixer-T/4"


def test_the_bf16_peak_is_the_highest_of_its_measurements_for_both_bf16_dtypes():
    """bf16 autocast and bf16 weights time the same product for their peak: each takes the
    highest bf16 measurement of the run (700 to 761 TFLOP/s on one H200), float32 its own."""
    script = load_script("throughput")
    try:
        peak, peaks = script.one_bf16_peak(761.0, {"bf16": 737.0, "bf16w": 700.0,
                                                   "fp32": 51.0})
        assert peak == 761.0 and peaks == {"bf16": 761.0, "bf16w": 761.0, "fp32": 51.0}
        assert script.one_bf16_peak(None, {"fp32": 1.0}) == (None, {"fp32": 1.0})  # a CPU
        assert script.one_bf16_peak(None, {"bf16": 2.0, "bf16w": 3.0})[1] == {
            "bf16": 3.0, "bf16w": 3.0}
    finally:
        sys.modules.pop("throughput", None)
