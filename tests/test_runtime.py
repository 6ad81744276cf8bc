"""How a run executes: torch.compile left to the run (mixer_lib.runtime.decide_compile)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from mixer_lib import runtime
from mixer_lib.config import RunConfig
from mixer_lib.distributed import World
from mixer_lib.runtime import COMPILE_PAYS_AFTER, decide_compile, execution_plan

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def triton(monkeypatch):
    """Whether Triton is installed, as the test sets it."""
    real = importlib.util.find_spec
    state = {"installed": True}

    def find_spec(name, *args):
        if name == "triton":
            return object() if state["installed"] else None
        return real(name, *args)

    monkeypatch.setattr(runtime.importlib.util, "find_spec", find_spec)
    return state


def run(**kw) -> RunConfig:
    return dataclasses.replace(RunConfig(variant="Mixer-B/16", accum_steps=1), **kw)


def test_compile_left_to_the_run_compiles_long_gpu_runs_of_a_mixer_only(triton):
    assert decide_compile(run(steps=COMPILE_PAYS_AFTER), CUDA)
    assert decide_compile(run(steps=COMPILE_PAYS_AFTER // 4, accum_steps=4), CUDA)
    assert not decide_compile(run(steps=COMPILE_PAYS_AFTER - 1), CUDA)  # too short to pay
    assert not decide_compile(run(steps=10 * COMPILE_PAYS_AFTER), CPU)  # slower on a CPU
    assert not decide_compile(run(steps=10 * COMPILE_PAYS_AFTER, variant="ResNet-S"), CUDA)
    triton["installed"] = False  # torch.compile would fail on a GPU without Triton
    assert not decide_compile(run(steps=10 * COMPILE_PAYS_AFTER), CUDA)


def test_compile_given_is_kept(triton):
    assert decide_compile(run(steps=1, compile=True), CPU)
    assert not decide_compile(run(steps=10 * COMPILE_PAYS_AFTER, compile=False), CUDA)


def test_execution_plan_decides_compile_on_a_cpu():
    cfg, memory = execution_plan(run(steps=10 * COMPILE_PAYS_AFTER).resolved(), CPU, World())
    assert cfg.compile is False and memory is None and cfg.accum_steps == 1
    cfg, _ = execution_plan(run(steps=3, compile=True).resolved(), CPU, World())
    assert cfg.compile is True


def test_compile_line_covers_the_payback_in_every_gpu_record():
    """The line is at least the number of micro-batches after which compiling Mixer-B/16
    paid back in each committed GPU performance record (compile time of the training step
    and of inference, over the time saved per micro-batch)."""
    paybacks = []
    for path in sorted((REPO / "results" / "perf").glob("benchmark-perf-gpu-*.json")):
        record = json.loads(path.read_text())
        rows = {(r["dtype"], r["batch"], r["mode"]): r
                for r in record["rows"] if r["model"] == "Mixer-B/16"}
        for (dtype, batch, mode), comp in rows.items():
            eager = rows.get((dtype, batch, "eager"))
            if mode != "compile" or eager is None or comp.get("first_train_s") is None:
                continue
            micro = min(batch, record.get("train_micro_batch") or batch)
            step_e, step_c = micro / eager["train_img_s"], micro / comp["train_img_s"]
            cost = (comp["first_train_s"] - batch / comp["train_img_s"]
                    + comp["first_infer_s"] - batch / comp["infer_img_s"])
            paybacks.append(cost / (step_e - step_c))
    assert paybacks and max(paybacks) <= COMPILE_PAYS_AFTER, paybacks
