"""Architecture: Table 1 registry, parameter counts, block definition, input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from mixer_lib import VARIANTS, create_model, get_config
from mixer_lib.flops import analytic_params
from mixer_lib.published import PAPER_PARAMS_M  # paper Table 1, "Parameters (M)"


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Table 1 as printed (patch, layers, C, S at 224 px, D_C, D_S, params without the head in M),
# typed here from the paper, not read from the library
TABLE1 = {
    "Mixer-S/32": (32, 8, 512, 49, 2048, 256, 19),
    "Mixer-S/16": (16, 8, 512, 196, 2048, 256, 18),
    "Mixer-B/32": (32, 12, 768, 49, 3072, 384, 60),
    "Mixer-B/16": (16, 12, 768, 196, 3072, 384, 59),
    "Mixer-L/32": (32, 24, 1024, 49, 4096, 512, 206),
    "Mixer-L/16": (16, 24, 1024, 196, 4096, 512, 207),
    "Mixer-H/14": (14, 32, 1280, 256, 5120, 640, 431),
}


def test_registry_is_table1():
    assert list(VARIANTS) == list(PAPER_PARAMS_M) == list(TABLE1)
    for name, (p, layers, c, s, dc, ds, params_m) in TABLE1.items():
        cfg = VARIANTS[name]
        assert (cfg.patch_size, cfg.num_blocks, cfg.hidden_dim, cfg.num_patches,
                cfg.channels_mlp_dim, cfg.tokens_mlp_dim) == (p, layers, c, s, dc, ds), name
        assert PAPER_PARAMS_M[name] == params_m


@pytest.mark.parametrize("name", list(TABLE1))
def test_parameter_counts_match_table1(name):
    """Counted from the built module without its head (Table 1 leaves the head out): exactly
    the count of the layers the paper describes with Table 1's sizes (stem, per block two
    LayerNorms and two MLPs, the final LayerNorm), and that count rounds to the printed
    figure; the library's closed form agrees."""
    p, layers, c, s, dc, ds, params_m = TABLE1[name]
    with torch.device("meta"):
        model = create_model(name, num_classes=0, img_size=224)
        with_head = create_model(name, num_classes=1000, img_size=224)
    n = count(model)
    stem = 3 * p * p * c + c
    token_mlp = (s * ds + ds) + (ds * s + s)
    channel_mlp = (c * dc + dc) + (dc * c + c)
    assert n == stem + layers * (2 * 2 * c + token_mlp + channel_mlp) + 2 * c
    assert round(n / 1e6) == params_m
    assert n == analytic_params(model.cfg)
    assert count(with_head) - n == c * 1000 + 1000


def test_official_defaults():
    model = create_model("Mixer-S/32")
    assert model.stem.kernel_size == (32, 32) and model.stem.stride == (32, 32)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 8 + 1 and all(n.eps == 1e-6 for n in norms)
    assert model.blocks[0].mlp_channels.act.approximate == "tanh"
    assert create_model("Mixer-S/32", gelu="exact").blocks[0].mlp_channels.act.approximate == \
        "none"
    assert torch.count_nonzero(model.head.weight) == 0 and torch.count_nonzero(model.head.bias) \
        == 0
    # zero head -> zero logits at initialisation, for any input
    assert torch.all(model(torch.randn(2, 3, 224, 224)) == 0)
    # lecun_normal: variance 1/fan_in for the channel-mixing fc1 (fan_in = 512)
    w = create_model("Mixer-B/16").blocks[0].mlp_channels.fc1.weight
    assert abs(w.std().item() - (1 / 768) ** 0.5) < 0.05 * (1 / 768) ** 0.5


def mixer_block_by_hand(block, x, gelu="tanh"):
    """Paper Eq. (1) written out with explicit transposes."""
    approx = "tanh" if gelu == "tanh" else "none"
    t = block.mlp_tokens
    y = F.layer_norm(x, x.shape[-1:], block.norm1.weight, block.norm1.bias, 1e-6)
    y = y.transpose(1, 2)  # (B, C, S): mix across patches, per channel
    y = F.linear(F.gelu(F.linear(y, t.fc1.weight, t.fc1.bias), approximate=approx),
                 t.fc2.weight, t.fc2.bias)
    u = x + y.transpose(1, 2)
    c = block.mlp_channels
    z = F.layer_norm(u, u.shape[-1:], block.norm2.weight, block.norm2.bias, 1e-6)
    z = F.linear(F.gelu(F.linear(z, c.fc1.weight, c.fc1.bias), approximate=approx),
                 c.fc2.weight, c.fc2.bias)
    return u + z


@pytest.mark.parametrize("gelu", ["tanh", "exact"])
def test_block_is_equation_1(gelu):
    cfg = get_config("Mixer-S/32", img_size=64, gelu=gelu)
    model = create_model(cfg).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(3, cfg.num_patches, cfg.hidden_dim)
    torch.testing.assert_close(model.blocks[0](x), mixer_block_by_hand(model.blocks[0], x, gelu),
                               rtol=1e-5, atol=1e-5)


class EinopsTokenMixing(torch.nn.Module):
    """The readable reference: the paper's transpose form, ``MLP(X^T)^T`` with einops."""

    def __init__(self, mlp) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, x):
        y = rearrange(x, "b s c -> b c s")
        y = self.mlp.fc2(F.gelu(self.mlp.fc1(y), approximate="tanh"))
        return rearrange(y, "b c s -> b s c")


def test_token_mixing_equals_the_transpose_form_in_values_and_gradients():
    model = create_model("Mixer-S/32", img_size=64, num_classes=5)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    mlp = model.blocks[0].mlp_tokens
    x = torch.randn(4, 4, 512, requires_grad=True)
    ours = mlp(x)
    ours.square().sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in mlp.parameters()]
    x.grad = None
    mlp.zero_grad()
    ref = EinopsTokenMixing(mlp)(x)
    ref.square().sum().backward()
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, [x.grad] + [p.grad for p in mlp.parameters()], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant,size,chans", [("Mixer-B/16", 224, 3), ("Mixer-H/14", 56, 3),
                                               ("Mixer-T/4", 32, 1)])
def test_stem_is_the_strided_convolution_as_one_product_over_patches(variant, size, chans):
    """PatchStem computes the official stem (a convolution with kernel = stride = P, whose
    parameters it keeps) as one dense layer over the flattened patches, giving the tokens in
    row-major patch order, contiguous; for any input layout, and under autocast in its
    dtype."""
    torch.manual_seed(0)
    model = create_model(variant, img_size=size, in_chans=chans)
    stem = model.stem
    assert isinstance(stem, torch.nn.Conv2d) and stem.weight.shape == (
        model.cfg.hidden_dim, chans, model.cfg.patch_size, model.cfg.patch_size)
    assert set(model.state_dict()) >= {"stem.weight", "stem.bias"}
    with torch.no_grad():
        stem.bias.normal_()
    x = torch.randn(2, chans, size, size)
    conv = F.conv2d(x, stem.weight, stem.bias, stride=stem.stride)
    expected = rearrange(conv, "b c h w -> b (h w) c")
    for images in (x, x.contiguous(memory_format=torch.channels_last),
                   x.transpose(2, 3).contiguous().transpose(2, 3)):
        tokens = stem(images)
        assert tokens.shape == (2, model.cfg.num_patches, model.cfg.hidden_dim)
        assert tokens.is_contiguous()
        torch.testing.assert_close(tokens, expected, rtol=1e-5, atol=2e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tokens = stem(x)
    assert tokens.dtype == torch.bfloat16
    torch.testing.assert_close(tokens.float(), expected, rtol=0.02, atol=0.05)


def test_layernorm_keeps_the_autocast_dtype_at_inference_and_autocasts_rules_in_training(
        monkeypatch):
    """Under bf16 autocast with no gradient wanted, the model's LayerNorm normalises a bf16
    stream in bf16 (one rounding of the float32 result, scale and bias rounded); with a
    gradient wanted, or a float32 stream, it is nn.LayerNorm under autocast's rules (float32
    out on CUDA; on a CPU autocast runs LayerNorm in bf16 itself); without autocast it is
    nn.LayerNorm."""
    from mixer_lib.model import LayerNorm

    torch.manual_seed(0)
    norm = LayerNorm(64, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.3)
        norm.bias.normal_()
    x = (3 * torch.randn(4, 10, 64) + 1).bfloat16()
    truth = F.layer_norm(x.float(), (64,), norm.weight, norm.bias, 1e-6)
    plain = torch.nn.LayerNorm.forward
    calls, layer_norm = [], F.layer_norm

    def seen(t, shape, weight, bias, eps):  # which path: dtypes, autocast on or off
        calls.append((t.dtype, weight.dtype, torch.is_autocast_enabled("cpu")))
        return layer_norm(t, shape, weight, bias, eps)

    monkeypatch.setattr(F, "layer_norm", seen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            fast = norm(x)
            assert calls == [(torch.bfloat16, torch.bfloat16, False)]
            assert torch.equal(norm(x.float()), plain(norm, x.float()))
        assert torch.equal(norm(x), plain(norm, x))
    assert calls[1:] == [(torch.float32, torch.float32, True)] * 2 + [
        (torch.bfloat16, torch.float32, True)] * 2  # nn.LayerNorm under autocast
    assert fast.dtype == torch.bfloat16
    # within two bf16 roundings (the output's and the scale's) of the float32 result
    assert ((fast.float() - truth).abs() <= 2 ** -7 * truth.abs() + 1e-2).all()
    assert torch.equal(norm(x.float()), truth)


def test_residual_stream_is_contiguous_batch_tokens_channels():
    """From the stem on, every block reads and writes a contiguous (B, S, C) tensor (no
    transposed layout for LayerNorm to read)."""
    model = create_model("Mixer-S/32", img_size=64, num_classes=3)
    seen = []
    for block in model.blocks:
        block.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 3, 64, 64))
    model(torch.randn(2, 3, 64, 64))
    assert len(seen) == 2 * len(model.blocks)
    for inp, out in seen:
        for t in (inp, out):
            assert t.shape == (2, 4, 512) and t.is_contiguous(), t.stride()


def test_no_per_sample_token_mixing_weight_is_saved_under_autocast():
    """Saved-tensor hooks: under bf16 autocast nothing of a per-sample token-mixing weight's
    shape (B, D_S, S) or (B, S, D_S) is kept for backward. The same hook finds them in the
    form that expanded the weight per sample before autocast cast it."""
    b = 8
    model = create_model("Mixer-T/4", img_size=32, num_classes=10)
    ds, s = model.cfg.tokens_mlp_dim, model.cfg.num_patches

    def per_sample_weights(forward) -> list:
        found = []

        def pack(t):
            if t.dim() == 3 and t.shape[0] == b and tuple(t.shape[1:]) in ((ds, s), (s, ds)):
                found.append(tuple(t.shape))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast("cpu", dtype=torch.bfloat16):
            forward(torch.randn(b, 3, 32, 32)).sum()
        return found

    assert per_sample_weights(model) == []

    def old_form(self, x):  # the form before: baddbmm on the expanded weight
        h = torch.baddbmm(self.fc1.bias[None, :, None], self.fc1.weight.expand(b, -1, -1), x)
        h = self.act(h)
        return torch.baddbmm(self.fc2.bias[None, :, None], self.fc2.weight.expand(b, -1, -1),
                             h)

    for block in model.blocks:
        block.mlp_tokens.forward = old_form.__get__(block.mlp_tokens)
    assert len(per_sample_weights(model)) >= len(model.blocks)


def test_token_mixing_mixes_only_across_patches():
    """Changing one patch changes other tokens only through token mixing."""
    model = create_model("Mixer-S/32", img_size=64, num_classes=0).eval()
    x = torch.randn(1, 3, 64, 64)
    x2 = x.clone()
    x2[..., :32, :32] += 1.0  # perturb patch 0 only
    stem = model.stem(x), model.stem(x2)
    assert torch.equal(stem[0][:, 1:], stem[1][:, 1:])  # stem is per patch
    out = model.blocks[0](stem[0]), model.blocks[0](stem[1])
    assert not torch.allclose(out[0][:, 1:], out[1][:, 1:])  # token mixing spreads it


def test_dropout_and_stochastic_depth_are_off_by_default_and_work_when_on():
    model = create_model("Mixer-S/32", img_size=64, num_classes=3)
    assert all(b.drop_path.p == 0 for b in model.blocks)
    reg = create_model("Mixer-S/32", img_size=64, num_classes=3, drop_rate=0.1,
                       drop_path_rate=0.2)
    assert reg.blocks[0].drop_path.p == 0 and reg.blocks[-1].drop_path.p == pytest.approx(0.2)
    for p in reg.head.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(2, 3, 64, 64)
    reg.train()
    assert not torch.equal(reg(x), reg(x))  # stochastic in training
    reg.eval()
    assert torch.equal(reg(x), reg(x))  # deterministic in eval


def test_grad_checkpointing_recomputes_blocks_and_gives_same_gradients():
    """With dropout and stochastic depth on, checkpointing re-runs every block in backward
    (each block's forward runs twice) and replays the same random masks, so the gradients
    equal those of the plain model; in eval or without grad it does not recompute."""
    kw = dict(img_size=64, num_classes=3, drop_rate=0.2, drop_path_rate=0.3)
    a = create_model("Mixer-S/32", **kw)
    b = create_model("Mixer-S/32", **kw, grad_checkpointing=True)
    for p in a.head.parameters():
        torch.nn.init.normal_(p)
    b.load_state_dict(a.state_dict())
    calls = {"n": 0}
    for block in b.blocks:
        # a pre-hook: the recompute stops as soon as it has what backward needs, before a
        # forward hook would run
        block.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    x = torch.randn(4, 3, 64, 64)
    torch.manual_seed(0)
    a(x).sum().backward()
    torch.manual_seed(0)
    b(x).sum().backward()
    assert calls["n"] == 2 * len(b.blocks)  # forward, then the recompute in backward
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)
    a.zero_grad()
    torch.manual_seed(1)
    a(x).sum().backward()  # another seed, other masks: the gradients differ
    assert not torch.allclose(a.stem.weight.grad, b.stem.weight.grad)
    calls["n"] = 0
    with torch.no_grad():
        b(x)
    b.eval()
    b(x).sum().backward()
    assert calls["n"] == 2 * len(b.blocks)  # once each: no recompute without training grads


@pytest.mark.parametrize("training", [False, True])
def test_model_compiles_as_one_graph(training):
    """torch.compile friendliness: dynamo captures the whole forward, no graph breaks, in
    eval and in training (dropout, stochastic depth, activation checkpointing on)."""
    import torch._dynamo as dynamo

    dynamo.reset()
    model = create_model("Mixer-T/4", num_classes=10,
                         drop_rate=0.1 if training else 0.0,
                         drop_path_rate=0.1 if training else 0.0, grad_checkpointing=training)
    model.train(training)
    explanation = dynamo.explain(model)(torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("autocast", [False, True])
def test_training_step_compiles_without_graph_breaks(autocast):
    """fullgraph=True fails on any graph break: the forward and the backward of a training
    step (AOTAutograd traces both) compile as one graph each, in float32 and bf16."""
    import torch._dynamo as dynamo

    dynamo.reset()
    model = create_model("Mixer-T/4", num_classes=10, drop_path_rate=0.1)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(4, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = compiled(x).float().square().mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


# ---------------------------------------------------------------------------- bad input


def test_wrong_image_size_is_a_clear_error():
    model = create_model("Mixer-B/16")
    with pytest.raises(ValueError, match=r"built for 224x224 images \(14x14 patches of 16 px\); "
                                         r"got 256x256.*img_size=256"):
        model(torch.zeros(1, 3, 256, 256))


def test_channels_last_and_unbatched_inputs_are_clear_errors():
    model = create_model("Mixer-S/32", img_size=64)
    with pytest.raises(ValueError, match="channels-last"):
        model(torch.zeros(1, 64, 64, 3))
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        model(torch.zeros(3, 64, 64))


def test_integer_and_mismatched_image_dtypes_are_clear_errors():
    """uint8 pixels (as torchvision.io decodes them) and images in another float dtype than
    the weights outside autocast stop at the model's door, with the cast to make."""
    model = create_model("Mixer-S/32", img_size=64, num_classes=3)
    with pytest.raises(ValueError, match=r"floating-point images in \[-1, 1\]; got "
                                         r"torch.uint8.*x.float\(\) / 127.5 - 1"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"weights are torch.float32 and the images "
                                         r"torch.float64: cast the images, x.to"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts both: allowed
        assert model(torch.zeros(1, 3, 64, 64, dtype=torch.float64)).shape == (1, 3)
    half = create_model("Mixer-S/32", img_size=64, num_classes=3).to(torch.bfloat16)
    assert half(torch.zeros(1, 3, 64, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_unknown_variant_and_option_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown Mixer variant 'Mixer-XL/8'.*Mixer-B/16"):
        create_model("Mixer-XL/8")
    with pytest.raises(TypeError, match="unknown MixerConfig option"):
        create_model("Mixer-B/16", hidden=3)
    with pytest.raises(ValueError, match="gelu must be"):
        create_model("Mixer-B/16", gelu="quick")
    with pytest.raises(ValueError, match="not a multiple of the patch size 16"):
        create_model("Mixer-B/16", img_size=200)


def test_variant_name_spellings():
    assert get_config("B/16").name == "Mixer-B/16"
    assert get_config("Mixer-B_16").name == "Mixer-B/16"


def test_table1_table_sets_each_count_beside_the_papers():
    from mixer_lib.flops import table1_table

    header, rows = table1_table()
    assert len(rows) == 7 and header[7:9] == ["params (M), no head, computed",
                                              "params (M), paper Table 1"]
    assert all(round(float(r[7])) == r[8] for r in rows)
    l16 = next(r for r in rows if r[0] == "Mixer-L/16")
    assert l16[9] == "208.20" and l16[3] == 196
