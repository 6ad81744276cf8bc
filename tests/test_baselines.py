"""The study's baselines: ResNet-S and ViT-T/4 (paired with Mixer-T/4)."""

from __future__ import annotations

import pytest
import torch

from mixer_lib.baselines import BASELINES, SmallViT
from mixer_lib.config import ConfigError, RunConfig
from mixer_lib.model import create_model


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_vit_is_paired_with_mixer_t4():
    vit, mixer = SmallViT(5), create_model("Mixer-T/4", num_classes=5, img_size=32)
    assert vit.stem.kernel_size == mixer.stem.kernel_size == (4, 4)
    assert vit.stem.out_channels == mixer.cfg.hidden_dim == 128
    assert len(vit.blocks) == len(mixer.blocks) == 4
    assert vit.blocks[0].mlp[0].out_features == mixer.cfg.channels_mlp_dim == 512
    assert _params(vit) == 808_709 and _params(mixer) == 569_349
    assert vit.pos_embed.shape == (1, 65, 128)  # class token + 8 x 8 patches


def test_vit_attention_matches_a_reference_multi_head_attention():
    vit = SmallViT(3)
    attn, x = vit.blocks[0].attn, torch.randn(2, 65, 128)
    ref = torch.nn.MultiheadAttention(128, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(attn.qkv.weight)
        ref.in_proj_bias.copy_(attn.qkv.bias)
        ref.out_proj.weight.copy_(attn.proj.weight)
        ref.out_proj.bias.copy_(attn.proj.bias)
        torch.testing.assert_close(attn(x), ref(x, x, x, need_weights=False)[0],
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(BASELINES))
def test_baselines_start_with_a_zero_head_or_pytorch_defaults_and_train(name):
    model = BASELINES[name](5, 32)
    x = torch.randn(4, 3, 32, 32)
    assert model(x).shape == (4, 5)
    loss = model(x).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_vit_refuses_other_sizes_clearly():
    with pytest.raises(ValueError, match="built for 32 px"):
        SmallViT(5)(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="multiple of 4; got 30"):
        SmallViT(5, img_size=30)
    with pytest.raises(ConfigError, match="not a multiple of ViT-T/4's patch size 4"):
        RunConfig(variant="ViT-T/4", img_size=30)
    assert SmallViT(5, img_size=16)(torch.randn(1, 3, 16, 16)).shape == (1, 5)
    RunConfig(variant="ResNet-S", img_size=30)  # global pooling: any size
