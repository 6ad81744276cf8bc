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
from mixer_lib.runtime import COMPILE_PAYS_AFTER_IMAGES, decide_compile, execution_plan

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


LINE = COMPILE_PAYS_AFTER_IMAGES


def run(**kw) -> RunConfig:
    return dataclasses.replace(RunConfig(variant="Mixer-B/16", batch_size=512), **kw)


def test_compile_left_to_the_run_compiles_long_gpu_runs_of_a_mixer_only(triton):
    assert decide_compile(run(steps=LINE // 512 + 1), CUDA)
    assert decide_compile(run(steps=LINE // 128, batch_size=128), CUDA)
    assert not decide_compile(run(steps=LINE // 512 - 1), CUDA)  # too short to pay back
    assert not decide_compile(run(steps=500), CUDA)  # the paper's Pets and Flowers runs
    assert decide_compile(run(steps=10_000), CUDA)  # its CIFAR runs
    assert not decide_compile(run(steps=10 * LINE), CPU)  # slower on a CPU
    assert not decide_compile(run(steps=10 * LINE, variant="ResNet-S"), CUDA)
    triton["installed"] = False  # torch.compile would fail on a GPU without Triton
    assert not decide_compile(run(steps=10 * LINE), CUDA)


def test_compile_given_is_kept(triton):
    assert decide_compile(run(steps=1, compile=True), CPU)
    assert not decide_compile(run(steps=10 * LINE, compile=False), CUDA)


def test_execution_plan_decides_compile_on_a_cpu():
    cfg, memory = execution_plan(run(steps=10 * LINE).resolved(), CPU, World())
    assert cfg.compile is False and memory is None and cfg.accum_steps == 1
    cfg, _ = execution_plan(run(steps=3, compile=True).resolved(), CPU, World())
    assert cfg.compile is True


def test_compile_line_covers_the_payback_in_every_gpu_record():
    """The line is at least the number of training images after which compiling Mixer-B/16
    paid back in each committed GPU performance record (compile time of the training step
    and of inference, less a step and a call, over the time saved per image)."""
    paybacks = []
    for path in sorted((REPO / "results" / "perf").glob("benchmark-perf-gpu-*.json")):
        rows = {(r["dtype"], r["batch"], r["mode"]): r for r in
                json.loads(path.read_text())["rows"] if r["model"] == "Mixer-B/16"}
        for (dtype, batch, mode), comp in rows.items():
            eager = rows.get((dtype, batch, "eager"))
            if mode != "compile" or eager is None or comp.get("first_train_s") is None:
                continue
            cost = (comp["first_train_s"] - batch / comp["train_img_s"]
                    + comp["first_infer_s"] - batch / comp["infer_img_s"])
            paybacks.append(cost / (1 / eager["train_img_s"] - 1 / comp["train_img_s"]))
    assert paybacks and max(paybacks) <= LINE, paybacks
