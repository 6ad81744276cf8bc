"""Checks of mixer_lib.token_kernel through Triton's CPU interpreter, run by
tests/test_token_kernel.py in a process of its own (TRITON_INTERPRET must be set before Triton
compiles anything). Prints one JSON object of findings; the test asserts on them."""

from __future__ import annotations

import json
import os
import sys

os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from mixer_lib import create_model, token_kernel  # noqa: E402


def kernel_vs_float64() -> dict:
    """Every tile shape on shapes that leave partial blocks everywhere (tokens padded to
    a power of two, channels and hidden units not multiples of the blocks), both GELUs,
    the normalised input given in float32 as under autocast; and the op in both forms. The
    "tma" shapes run where TMA's 16-byte rows allow (not at C = 130 or D_S = 33: there the
    op's "tma" form falls back to pointers)."""
    out = {}
    gen = torch.Generator().manual_seed(0)
    for bsz, s, c, ds in ((2, 196, 72, 48), (1, 49, 130, 33), (1, 16, 64, 16),
                          (1, 49, 136, 40)):
        half = torch.float16
        x = torch.randn(bsz, s, c, generator=gen).to(half)
        y = torch.randn(bsz, s, c, generator=gen)
        w1 = (torch.randn(ds, s, generator=gen) / s ** 0.5).to(half)
        b1 = (0.1 * torch.randn(ds, generator=gen)).to(half)
        w2 = (torch.randn(s, ds, generator=gen) / ds ** 0.5).to(half)
        b2 = (0.1 * torch.randn(s, generator=gen)).to(half)
        tma = token_kernel.tma_possible(x, y, w2)
        for exact in (False, True):
            pre = torch.einsum("hs,bsc->bhc", w1.double(), y.to(half).double()) \
                + b1.double()[:, None]
            hidden = torch.nn.functional.gelu(pre, approximate="none" if exact else "tanh")
            ref = x.double() + torch.einsum("sh,bhc->bsc", w2.double(), hidden) \
                + b2.double()[:, None]
            shape = f"{bsz}x{s}x{c}x{ds} exact={exact}"
            for config in token_kernel.CONFIGS:
                if config[0] == "tma" and not tma:
                    continue
                got = token_kernel.run_config(x, y, w1, b1, w2, b2, exact, config,
                                              torch.empty_like(x))
                out[f"{shape} {config}"] = {"diff": (got.double() - ref).abs().max().item(),
                                            "scale": ref.abs().max().item()}
            for form in token_kernel.FORMS:
                via_op = token_kernel.token_mixing_residual(x, y, w1, b1, w2, b2, exact,
                                                            form == "tma")
                out[f"{shape} op {form}"] = {
                    "diff": (via_op.double() - ref).abs().max().item(),
                    "scale": ref.abs().max().item(), "dtype": str(via_op.dtype),
                    "tma_possible": tma}
    return out


def tma_rules() -> dict:
    """Where the "tma" form can run: rows of 16-byte multiples, 16-byte aligned starts."""
    x = torch.zeros(2, 196, 72, dtype=torch.float16)
    w2 = torch.zeros(196, 48, dtype=torch.float16)
    y = torch.zeros(2, 196, 72)
    shifted = torch.zeros(2 * 196 * 72 + 1, dtype=torch.float16)[1:].view(2, 196, 72)
    return {"aligned": token_kernel.tma_possible(x, y, w2),
            "channels of 130 fp16 (260-byte rows)": token_kernel.tma_possible(
                torch.zeros(2, 196, 130, dtype=torch.float16), torch.zeros(2, 196, 130), w2),
            "hidden of 33 (66-byte weight rows)": token_kernel.tma_possible(
                x, y, torch.zeros(196, 33, dtype=torch.float16)),
            "x starting 2 bytes off": token_kernel.tma_possible(shifted, y, w2)}


def in_models() -> dict:
    """Whole models: Mixer-T/4 at 56 px (196 tokens, padded to 256) with both GELUs, under
    CPU autocast to fp16 (the interpreter's bf16 products are wrong), each kernel form."""
    out = {}
    for gelu in ("tanh", "exact"):
        for form in token_kernel.FORMS:
            torch.manual_seed(0)
            model = create_model("Mixer-T/4", num_classes=10, img_size=56, gelu=gelu,
                                 token_kernel_form=form)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.05 * torch.randn_like(p))
            images = torch.rand(2, 3, 56, 56) * 2 - 1
            forms = []  # the form of each launch (the op runs its form's first tile shape)
            launch = token_kernel.run_config
            token_kernel.run_config = lambda *a, seen=forms, run=launch: (
                seen.append(a[7][0]) or run(*a))
            try:
                case = token_kernel.compare_with_reference(model, images, torch.float16)
            finally:
                token_kernel.run_config = launch
            out[f"{gelu} {form}"] = case | {"launched": sorted(set(forms))}
    return out


def applies_cases() -> dict:
    model = create_model("Mixer-T/4", num_classes=10).eval()
    block = model.blocks[0]
    x = torch.randn(2, 64, 128)
    out = {}
    with torch.no_grad():
        out["fp32, no autocast"] = token_kernel.applies(block, x)
        with torch.autocast("cpu", dtype=torch.float16):
            out["eval, no grad, autocast fp16"] = token_kernel.applies(block, x)
            block.fused_token_mixing = False
            out["turned off"] = token_kernel.applies(block, x)
            block.fused_token_mixing = True
            out["too many tokens"] = token_kernel.applies(block, torch.randn(1, 257, 128))
    with torch.autocast("cpu", dtype=torch.float16):
        out["grad wanted"] = token_kernel.applies(block, x)
        for p in model.parameters():
            p.requires_grad_(False)
        out["grad on, nothing requires it"] = token_kernel.applies(block, x)
        for name, p in (("its second bias", block.mlp_tokens.fc2.bias),
                        ("its LayerNorm's scale", block.norm1.weight),
                        ("its LayerNorm's bias", block.norm1.bias)):
            p.requires_grad_(True)
            out[f"grad on, only {name} trains"] = token_kernel.applies(block, x)
            p.requires_grad_(False)
    half = create_model("Mixer-T/4", num_classes=10).eval().half()
    with torch.no_grad():
        out["fp16 weights"] = token_kernel.applies(half.blocks[0], x.half())
    dropping = create_model("Mixer-T/4", num_classes=10, drop_path_rate=0.1).half().train()
    with torch.no_grad():
        out["training with stochastic depth"] = token_kernel.applies(dropping.blocks[1],
                                                                      x.half())
    return out


def compiled() -> dict:
    """torch.compile through the fused path, each form: graph breaks, and agreement with
    eager."""
    out = {}
    for form in token_kernel.FORMS:
        torch.manual_seed(0)
        model = create_model("Mixer-T/4", num_classes=10,
                             token_kernel_form=form).eval().half()
        images = torch.randn(2, 3, 32, 32).half()
        with torch.no_grad():
            torch._dynamo.reset()
            explained = torch._dynamo.explain(model.forward_features)(images)
            eager = model.forward_features(images)
            torch._dynamo.reset()
            graph = torch.compile(model.forward_features)(images)
        out[form] = {"graph_breaks": explained.graph_break_count,
                     "ops": sorted({str(node.target) for g in explained.graphs
                                    for node in g.graph.nodes
                                    if "token_mixing" in str(node.target)}),
                     "max_diff": (eager.float() - graph.float()).abs().max().item()}
    return out


if __name__ == "__main__":
    part = sys.argv[1]
    print(json.dumps({"kernel": kernel_vs_float64, "models": in_models, "tma": tma_rules,
                      "applies": applies_cases, "compiled": compiled}[part]()))
