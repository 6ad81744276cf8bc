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
    blocks, and the op in each form: within fp16 rounding of the float64 result (one ulp of
    the output's scale). The "tma" shapes ran on the three shapes whose rows TMA accepts."""
    found = interpreted("kernel")
    pointers = len(token_kernel.configs_of("pointers"))
    tma = len(token_kernel.configs_of("tma"))
    assert tma >= 1 and pointers + tma == len(token_kernel.CONFIGS)
    ops = len(token_kernel.FORMS)
    assert len(found) == 2 * (4 * (pointers + ops) + 3 * tma)
    for key, case in found.items():
        assert case["diff"] < 2 ** -10 * case["scale"] * 2, (key, case)
    assert sum("'tma'" in key for key in found) == 2 * 3 * tma


def test_the_op_returns_the_residual_streams_dtype():
    assert {c["dtype"] for k, c in interpreted("kernel").items() if " op " in k} == {
        "torch.float16"}


def test_tma_form_runs_only_on_16_byte_rows_and_starts():
    assert interpreted("tma") == {"aligned": True, "channels of 130 fp16 (260-byte rows)": False,
                                  "hidden of 33 (66-byte weight rows)": False,
                                  "x starting 2 bytes off": False}
    assert [k for k, c in interpreted("kernel").items() if " op " in k
            and not c["tma_possible"]] == ["1x49x130x33 exact=False op pointers",
                                           "1x49x130x33 exact=False op tma",
                                           "1x49x130x33 exact=True op pointers",
                                           "1x49x130x33 exact=True op tma"]


def test_whole_models_through_the_kernel_match_the_reference_within_its_own_error():
    """Mixer-T/4 at 56 px (196 tokens), tanh and exact GELU, each form, under fp16
    autocast: every block took the kernel in the form asked for, and its features are as
    close to float32 as the reference's."""
    found = interpreted("models")
    assert sorted(found) == sorted(f"{g} {f}" for g in ("tanh", "exact")
                                   for f in token_kernel.FORMS)
    for name, case in found.items():
        assert case["blocks_fused"] == case["blocks"] == 4, name
        assert case["launched"] == [name.split()[1].replace("pointers", "tokens")], name
        assert case["blocks_tma"] == (4 if name.endswith("tma") else 0), name
        assert case["fused_vs_float32"] < 2 * case["reference_vs_float32"] + 1e-3, (name, case)
        assert case["fused_vs_reference"] < 0.05, (name, case)


def test_the_kernel_applies_only_to_inference_in_half_precision_with_few_enough_tokens():
    assert interpreted("applies") == {
        "fp32, no autocast": False, "eval, no grad, autocast fp16": True, "turned off": False,
        "too many tokens": False, "grad wanted": False, "grad on, nothing requires it": True,
        "grad on, only its second bias trains": False,
        "grad on, only its LayerNorm's scale trains": False,
        "grad on, only its LayerNorm's bias trains": False,
        "fp16 weights": True, "training with stochastic depth": False}


def test_compiled_model_keeps_the_kernel_as_one_op_without_graph_breaks():
    found = interpreted("compiled")
    assert sorted(found) == sorted(token_kernel.FORMS)
    for form, case in found.items():
        assert case["graph_breaks"] == 0, form
        assert case["ops"] == ["mixer_lib.token_mixing_residual.default"], form
        assert case["max_diff"] < 0.02, form


def test_without_the_interpreter_the_cpu_path_is_the_reference():
    """In this process (no TRITON_INTERPRET) a CPU tensor never takes the kernel, whatever
    the dtype: CPU results stay those of TokenMixingMlp."""
    model = create_model("Mixer-T/4", num_classes=10).eval().half()
    x = torch.randn(2, 64, 128).half()
    with torch.no_grad():
        assert not token_kernel.applies(model.blocks[0], x)
    # TMA needs a GPU (or the interpreter)
    assert not token_kernel.tma_device(x.device)
    assert not token_kernel.tma_possible(x, x, torch.zeros(64, 64).half())


def test_config_turns_the_kernel_off_in_every_block_and_picks_its_form():
    model = create_model("Mixer-T/4", num_classes=10, fused_token_mixing=False)
    assert not any(b.fused_token_mixing for b in model.blocks)
    assert {b.token_kernel_form for b in model.blocks} == {"tma"}  # the default
    token_kernel.set_fused(model, True)
    assert all(b.fused_token_mixing for b in model.blocks)
    token_kernel.set_fused(model, True, "pointers")
    assert {b.token_kernel_form for b in model.blocks} == {"pointers"}
    with pytest.raises(ValueError, match="must be one of"):
        token_kernel.set_fused(model, True, "wgmma")
    assert {b.token_kernel_form for b in create_model(
        "Mixer-T/4", num_classes=10, token_kernel_form="pointers").blocks} == {"pointers"}
    with pytest.raises(ValueError, match="token_kernel_form must be one of"):
        create_model("Mixer-T/4", num_classes=10, token_kernel_form="TMA")


def test_tile_shapes_name_their_form():
    assert {c[0] for c in token_kernel.CONFIGS} == {"tokens", "channels", "tma"}
    assert all(c[0] == "tma" for c in token_kernel.configs_of("tma"))
    assert not any(c[0] == "tma" for c in token_kernel.configs_of("pointers"))


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


def test_configs_are_selected_by_index_and_form():
    """What the kernel benchmarks' --configs takes."""
    configs = [("tokens", 64), ("channels", 128), ("tma", 128), ("tma", 64)]
    assert token_kernel.select_configs("all", configs) == [0, 1, 2, 3]
    assert token_kernel.select_configs("tma,0", configs) == [0, 2, 3]
    assert token_kernel.select_configs("1,1,channels", configs) == [1]
    for bad in ("4", "wgmma", ""):
        with pytest.raises(ValueError, match="neither an index"):
            token_kernel.select_configs(bad, configs)
    assert token_kernel.select_configs("tma") == [
        token_kernel.CONFIGS.index(c) for c in token_kernel.configs_of("tma")]


def test_flop_counter_counts_the_kernel_as_the_reference_products():
    """FlopCounterMode counts the fused op (on fake tensors: no Triton needed) as the token
    MLP's two products that it replaces, so the benchmarks' FLOPs and MFU do not depend on
    the path."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    mlp = create_model("Mixer-T/4").blocks[0].mlp_tokens  # S = 64 tokens, D_S = 64
    bsz, s, c, ds = 3, 64, 40, mlp.fc1.out_features
    with FlopCounterMode(display=False) as reference, torch.no_grad():
        mlp(torch.randn(bsz, s, c))
    with FakeTensorMode():
        x = torch.randn(bsz, s, c)
        w = [t.to(torch.bfloat16) for t in (torch.randn(ds, s), torch.randn(ds),
                                            torch.randn(s, ds), torch.randn(s))]
        with FlopCounterMode(display=False) as fused:
            out = torch.ops.mixer_lib.token_mixing_residual(x, x, *w, False)
    assert out.shape == (bsz, s, c)
    assert fused.get_total_flops() == reference.get_total_flops() == 4 * bsz * s * c * ds
