"""The channel MLP's dense layer, bias and GELU in one call (mixer_lib.dense_gelu).

On a CPU ``torch._addmm_activation`` computes the exact GELU, so the path never runs there in
the library; these tests open it on the CPU (``DEVICES``) to check everything but the GELU's
form: where it applies, its reshapes, transposes, bias and casts, against the model's own
layers with the exact GELU. The tanh GELU on CUDA is checked on the GPU
(``benchmarks/token_mixing.py`` records ``dense_gelu_float32``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mixer_lib import create_model, dense_gelu


@pytest.fixture
def on_cpu(monkeypatch):
    """The fused path opened on the CPU, counting its calls."""
    calls = []
    op = torch._addmm_activation

    def counted(*args, **kwargs):
        calls.append(args[1].shape)
        return op(*args, **kwargs)

    monkeypatch.setattr(dense_gelu, "DEVICES", ("cpu",))
    monkeypatch.setattr(torch, "_addmm_activation", counted)
    return calls


def test_on_a_cpu_the_op_computes_the_exact_gelu_and_the_comparison_tells_them_apart():
    torch.manual_seed(0)
    fc = nn.Linear(64, 256)
    case = dense_gelu.compare_with_reference(fc, 2 * torch.randn(3, 10, 64))
    assert case["vs_exact"] < 1e-6 and case["vs_tanh"] > 1e-4  # why DEVICES is CUDA only


def test_it_never_applies_on_a_cpu_by_default():
    model = create_model("Mixer-T/4", num_classes=3).eval()
    with torch.no_grad():
        assert not dense_gelu.applies(model.blocks[0].mlp_channels, torch.randn(2, 64, 128))


def test_where_it_applies(on_cpu):
    model = create_model("Mixer-T/4", num_classes=3)
    mlp, x = model.blocks[0].mlp_channels, torch.randn(2, 64, 128)
    assert dense_gelu.applies(mlp, x.requires_grad_(False)) is False  # grad wanted: trains
    with torch.no_grad():
        assert dense_gelu.applies(mlp, x)
    model.requires_grad_(False)
    assert dense_gelu.applies(mlp, x)  # frozen weights, no gradient anywhere
    assert not dense_gelu.applies(mlp, x.clone().requires_grad_())
    with torch.no_grad():
        exact = create_model("Mixer-T/4", gelu="exact").blocks[0].mlp_channels
        assert not dense_gelu.applies(exact, x)
        off = create_model("Mixer-T/4", fused_dense_gelu=False).blocks[0].mlp_channels
        assert not dense_gelu.applies(off, x)
        dropout = create_model("Mixer-T/4", drop_rate=0.1).blocks[0].mlp_channels
        assert dense_gelu.applies(dropout.eval(), x)
        assert not dense_gelu.applies(dropout.train(), x)
        assert not dense_gelu.applies(model.blocks[0].mlp_tokens, x)  # token MLP: never


def exact_gelu_reference(model: nn.Module) -> nn.Module:
    """``model`` with the fused path off and the GELUs it replaced exact (what the CPU's op
    computes); the token-mixing MLPs keep theirs."""
    for module in model.modules():
        if getattr(module, "fused_dense_gelu", False):
            module.fused_dense_gelu = False
            module.act = nn.GELU()
    return model


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_model_through_the_fused_path_computes_its_layers(on_cpu, dtype):
    """In float32 and with the weights in bf16 (no autocast: where the path applies)."""
    torch.manual_seed(0)
    model = create_model("Mixer-T/4", num_classes=5).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model = model.to(dtype)
    images = (torch.rand(3, 3, 32, 32) * 2 - 1).to(dtype)
    with torch.no_grad():
        fused = model(images).float()
        assert len(on_cpu) == len(model.blocks) and on_cpu[0] == (3 * 64, 128)
        reference = exact_gelu_reference(model)(images).float()
    assert len(on_cpu) == len(model.blocks)  # the reference never took it
    tolerance = 0.05 if dtype == torch.bfloat16 else 1e-5
    assert (fused - reference).abs().max().item() < tolerance * reference.abs().max().item()


def test_under_autocast_the_model_takes_the_layer_then_the_gelu(on_cpu):
    """Autocast: fc1 then GELU, not the one call (slower under autocast on an H200)."""
    model = create_model("Mixer-T/4", num_classes=5).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert not dense_gelu.applies(model.blocks[0].mlp_channels, torch.randn(2, 64, 128))
        model(torch.rand(2, 3, 32, 32))
    assert on_cpu == []


def test_the_fused_path_compiles_without_graph_breaks(monkeypatch):
    monkeypatch.setattr(dense_gelu, "DEVICES", ("cpu",))
    model = create_model("Mixer-T/4", num_classes=5).eval()
    with torch.no_grad():
        explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    ops = {str(node.target) for graph in explanation.graphs for node in graph.graph.nodes}
    assert any("_addmm_activation" in op for op in ops), sorted(ops)


@pytest.mark.parametrize("variant", ["Mixer-T/4", "Mixer-S/32"])
def test_flop_counter_counts_the_model_the_same_through_the_one_call(on_cpu, variant):
    """The benchmarks' FLOP count (and every MFU figure) must not depend on the path: the
    H200 run of 2026-11-28 found FlopCounterMode counting nothing for the one call, and the
    throughput benchmark refused every configuration of the model with it."""
    from torch.utils.flop_counter import FlopCounterMode

    from mixer_lib.flops import analytic_flops

    counted = {}
    for fused in (True, False):
        model = create_model(variant, num_classes=10, fused_dense_gelu=fused).eval()
        x = torch.randn(1, 3, model.cfg.img_size, model.cfg.img_size)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        counted[fused] = counter.get_total_flops()
    assert len(on_cpu) == model.cfg.num_blocks  # the one call ran in each block
    assert counted[True] == counted[False] == analytic_flops(model.cfg)
