"""mixer_lib.token_kernel: the fused token-mixing kernel agrees with the reference, applies
exactly where it should, and compiles without graph breaks. The kernel runs through Triton's
CPU interpreter in a process of its own (tests/interpreted_token_kernel.py); GPU numbers are
in results/perf/ (benchmarks/token_kernel_configs.py, token_mixing.py, throughput.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache

import pytest
import torch

from mixer_lib import create_model, token_kernel
from tests.conftest import REPO


@cache
def interpreted(part: str) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "tests" / "interpreted_token_kernel.py"),
                           part], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_tile_shape_matches_float64_on_ragged_shapes():
    """Each entry of CONFIGS, both GELUs, on shapes with partial token, channel and hidden
    blocks: within fp16 rounding of the float64 result (one ulp of the output's scale)."""
    found = interpreted("kernel")
    assert len(found) == 3 * 2 * (len(token_kernel.CONFIGS) + 1)
    for key, case in found.items():
        assert case["diff"] < 2 ** -10 * case["scale"] * 2, (key, case)


def test_the_op_returns_the_residual_streams_dtype():
    assert {c["dtype"] for k, c in interpreted("kernel").items() if k.endswith("op")} == {
        "torch.float16"}


def test_whole_models_through_the_kernel_match_the_reference_within_its_own_error():
    """Mixer-T/4 at 56 px (196 tokens), tanh and exact GELU, under fp16 autocast: every
    block took the kernel, and its features are as close to float32 as the reference's."""
    for gelu, case in interpreted("models").items():
        assert case["blocks_fused"] == case["blocks"] == 4, gelu
        assert case["fused_vs_float32"] < 2 * case["reference_vs_float32"] + 1e-3, (gelu, case)
        assert case["fused_vs_reference"] < 0.05, (gelu, case)


def test_the_kernel_applies_only_to_inference_in_half_precision_with_few_enough_tokens():
    assert interpreted("applies") == {
        "fp32, no autocast": False, "eval, no grad, autocast fp16": True, "turned off": False,
        "too many tokens": False, "grad wanted": False, "grad on, nothing requires it": True,
        "grad on, only its second bias trains": False,
        "grad on, only its LayerNorm's scale trains": False,
        "fp16 weights": True, "training with stochastic depth": False}


def test_compiled_model_keeps_the_kernel_as_one_op_without_graph_breaks():
    found = interpreted("compiled")
    assert found["graph_breaks"] == 0
    assert found["ops"] == ["mixer_lib.token_mixing_residual.default"]
    assert found["max_diff"] < 0.02


def test_without_the_interpreter_the_cpu_path_is_the_reference():
    """In this process (no TRITON_INTERPRET) a CPU tensor never takes the kernel, whatever
    the dtype: CPU results stay those of TokenMixingMlp."""
    model = create_model("Mixer-T/4", num_classes=10).eval().half()
    with torch.no_grad():
        assert not token_kernel.applies(model.blocks[0], torch.randn(2, 64, 128).half())


def test_config_turns_the_kernel_off_in_every_block():
    model = create_model("Mixer-T/4", num_classes=10, fused_token_mixing=False)
    assert not any(b.fused_token_mixing for b in model.blocks)
    token_kernel.set_fused(model, True)
    assert all(b.fused_token_mixing for b in model.blocks)


@pytest.mark.parametrize("bad, message", [
    ({"y": (2, 5, 8)}, "y has shape"), ({"w1": (6, 5)}, "w1 has shape"),
    ({"b2": (3,)}, "b2 has shape"), ({"dtype": torch.float32}, "bf16 or fp16")])
def test_the_op_refuses_mismatched_inputs_before_any_launch(bad, message):
    shapes = {"x": (2, 4, 8), "y": (2, 4, 8), "w1": (6, 4), "b1": (6,), "w2": (4, 6),
              "b2": (4,)}
    dtype = bad.pop("dtype", torch.float16)
    shapes |= bad
    t = {k: torch.zeros(v, dtype=dtype if k[0] in "wb" else torch.float16)
         for k, v in shapes.items()}
    with pytest.raises(ValueError, match=message):
        token_kernel.token_mixing_residual(t["x"], t["y"], t["w1"], t["b1"], t["w2"],
                                           t["b2"], False)


def test_fake_tensors_give_the_output_shape_and_dtype_without_running_the_kernel():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(3, 196, 768, dtype=torch.bfloat16)
        y = torch.empty(3, 196, 768)
        w1, b1 = torch.empty(384, 196, dtype=torch.bfloat16), torch.empty(384,
                                                                          dtype=torch.bfloat16)
        w2, b2 = torch.empty(196, 384, dtype=torch.bfloat16), torch.empty(196,
                                                                          dtype=torch.bfloat16)
        out = token_kernel.token_mixing_residual(x, y, w1, b1, w2, b2, False)
    assert out.shape == (3, 196, 768) and out.dtype == torch.bfloat16 and out.is_contiguous()
