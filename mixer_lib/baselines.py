"""The study's baselines: the architectures the paper compares Mixer with, in miniature.

``ResNet-S``: a small pre-activation-free ResNet for 32 px inputs (3 stages of two basic
blocks, widths 16/32/64, BatchNorm, global average pooling), sized to train on a laptop CPU;
the convolutional baseline of Section 3.4 (permutations) and of the scale study (BiT's role).

``ViT-T/4``: a Vision Transformer (Dosovitskiy et al., 2021) paired with ``Mixer-T/4`` the
way the paper pairs ViT-B/16 with Mixer-B/16 (Table 3): the same patch (4 px), width (128),
depth (4) and MLP width (512), a class token, learned position embeddings, pre-LayerNorm
blocks with 4 heads, exact GELU, a final LayerNorm and a zero-initialised head. At 32 px it
has 0.81 M parameters (Mixer-T/4: 0.57 M) and needs about 1.35x Mixer-T/4's FLOPs
(ViT-B/16 / Mixer-B/16 at 224 px: 1.39x).

Every baseline exposes ``forward_features`` and ``forward_head(x, pre_logits=True)`` as the
Mixer does (and timm's models), so a frozen-feature probe reads every model the same way.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection. ``(B, c_in, H, W) -> (B, c, H/s, W/s)``."""

    def __init__(self, c_in: int, c: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True),
            nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.skip = (nn.Identity() if stride == 1 and c_in == c else
                     nn.Sequential(nn.Conv2d(c_in, c, 1, stride, bias=False), nn.BatchNorm2d(c)))
        self.act = nn.ReLU(True)

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))


class SmallResNet(nn.Module):
    """``(B, 3, H, W) -> (B, num_classes)``."""

    def __init__(self, num_classes: int, img_size: int = 32,
                 widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()  # img_size: any (global average pooling); kept for one signature
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(True)]
        c_in = widths[0]
        for i, c in enumerate(widths):
            layers += [BasicBlock(c_in, c, 1 if i == 0 else 2), BasicBlock(c, c, 1)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, 64, H/4, W/4)``."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling, then the head: ``(B, c, h, w) -> (B, num_classes)``."""
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class Attention(nn.Module):
    """Multi-head self-attention: ``(B, N, C) -> (B, N, C)``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, C/heads)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class EncoderBlock(nn.Module):
    """Pre-LayerNorm Transformer block: ``x + MSA(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SmallViT(nn.Module):
    """``(B, 3, H, W) -> (B, num_classes)``; the class token's final state is the
    representation (ViT's ``classifier="token"``)."""

    def __init__(self, num_classes: int, img_size: int = 32, patch: int = 4, dim: int = 128,
                 depth: int = 4, heads: int = 4, mlp_dim: int = 512) -> None:
        super().__init__()
        if img_size % patch:
            raise ValueError(f"ViT with {patch} px patches needs an img_size that is a multiple "
                             f"of {patch}; got {img_size}")
        self.img_size = img_size
        self.stem = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.empty(1, 1 + (img_size // patch) ** 2, dim))
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads, mlp_dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.head.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, 1 + N, C)`` after the final LayerNorm."""
        if tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise ValueError(f"this ViT was built for {self.img_size} px images (its position "
                             f"embeddings are fixed); got {x.shape[-2]}x{x.shape[-1]}")
        x = self.stem(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The class token, then the head: ``(B, 1 + N, C) -> (B, num_classes)``."""
        x = x[:, 0]
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# name -> class; each is built as ``BASELINES[name](num_classes, img_size)``
BASELINES = {"ResNet-S": SmallResNet, "ViT-T/4": SmallViT}
BASELINE_PATCH = {"ViT-T/4": 4}  # the img_size of these must be a multiple of their patch
