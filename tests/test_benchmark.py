"""The benchmark script keeps working (tiny size; no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import sys

from tests.conftest import REPO


def test_throughput_benchmark_runs_at_tiny_size(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("throughput",
                                                  REPO / "benchmarks" / "throughput.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "throughput", bench)
    spec.loader.exec_module(bench)
    rows = bench.main(["--preset", "tiny", "--device", "cpu", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "Mixer-S/32" in out and "timm:mixer_s32_224" in out
    assert {r.model for r in rows} == {"Mixer-S/32", "timm:mixer_s32_224"}
    ours = next(r for r in rows if r.model == "Mixer-S/32")
    assert ours.gflops_fwd > 0 and ours.infer_img_s > 0 and ours.train_img_s > 0
    record = json.loads(next(tmp_path.glob("benchmark-tiny-*.json")).read_text())
    assert record["environment"]["torch"] and len(record["rows"]) == 2
