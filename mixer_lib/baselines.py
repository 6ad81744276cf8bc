"""Convolutional baseline for the permutation experiment (paper Section 3.4 uses a ResNet).

``ResNet-S``: a small pre-activation-free ResNet for 32 px inputs (3 stages of two basic
blocks, widths 16/32/64, BatchNorm, global average pooling), sized to train on a laptop CPU.
"""

from __future__ import annotations

from torch import nn


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

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(True)]
        c_in = widths[0]
        for i, c in enumerate(widths):
            layers += [BasicBlock(c_in, c, 1 if i == 0 else 2), BasicBlock(c, c, 1)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


BASELINES = {"ResNet-S": SmallResNet}
