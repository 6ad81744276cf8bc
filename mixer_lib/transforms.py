"""The paper's preprocessing (the official vit_jax input pipeline): Inception crop and flip
for training, a plain resize (or resize + centre crop) for evaluation, pixels scaled to
[-1, 1] by ``(x - 127.5) / 127.5``, what the released checkpoints expect."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

MEAN = STD = (0.5, 0.5, 0.5)  # (x/255 - 0.5) / 0.5 == (x - 127.5) / 127.5


class ToSignedTensor:
    """PIL image -> float tensor (C, H, W) in [-1, 1]: ``(x / 255 - 0.5) / 0.5``, the official
    input scaling. The same operations in the same order as torchvision's ``ToTensor()`` then
    ``Normalize(MEAN, STD)``, so bit for bit the same values, at about a third of their cost
    per image (which the data workers of a 2-core CPU share with the model)."""

    def __init__(self, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.array(np.asarray(img.convert("RGB"), dtype=np.uint8))

    def array(self, pixels: np.ndarray) -> torch.Tensor:
        """One ``(H, W, 3)`` uint8 array -> ``(3, H, W)`` float (a batch of one)."""
        return self.batch(torch.from_numpy(pixels.copy())[None])[0]

    def batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float: per element ``x / 255``, minus
        the mean, over the std, in that order (what ``ToTensor`` + ``Normalize`` do)."""
        x = self.layout(pixels).float().div_(255)
        return x.sub_(self.mean).div_(self.std)

    def is_official(self) -> bool:
        """Whether this is the official scaling, ``(x - 127.5) / 127.5``."""
        return (self.mean.flatten().tolist() == list(MEAN)
                and self.std.flatten().tolist() == list(STD))

    @staticmethod
    def layout(pixels: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` uint8, contiguous: what a data worker
        hands to a GPU (a quarter of float32's bytes); :meth:`scale` finishes there."""
        return pixels.permute(0, 3, 1, 2).contiguous()

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` uint8 on any device -> the float32 values :meth:`batch` gives, by
        looking each pixel up in a table of the 256 values per channel that :meth:`batch`'s
        arithmetic gives on the CPU (a GPU's ``div`` by a number multiplies by its
        reciprocal, which can differ in the last bit; a table cannot)."""
        table, offsets = self._lookup(x.device)
        return table[x.long() + offsets]

    def _lookup(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`scale`'s table, flattened ``(3 * 256,)``, and each channel's offset into it
        ``(1, 3, 1, 1)``, on ``device``: made once per device (a training step scales every
        batch)."""
        tables = self.__dict__.setdefault("_tables", {})
        if device not in tables:
            values = torch.arange(256, dtype=torch.uint8).view(1, 1, 256, 1)
            table = self.batch(values.expand(1, 1, 256, 3))[0, :, 0, :].contiguous()  # (3, 256)
            tables[device] = (table.view(-1).to(device),
                              torch.arange(0, 3 * 256, 256, device=device).view(1, 3, 1, 1))
        return tables[device]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def train_transform(img_size: int, randaugment: tuple[int, int] | None = None,
                    flip: bool = True) -> Callable:
    """Inception crop + flip (+ optional RandAugment(num_ops, magnitude)) -> [-1, 1] tensor."""
    ops: list = [T.RandomResizedCrop(img_size, scale=(0.05, 1.0), ratio=(3 / 4, 4 / 3),
                                     interpolation=T.InterpolationMode.BILINEAR)]
    if flip:
        ops.append(T.RandomHorizontalFlip())
    if randaugment:
        ops.append(T.RandAugment(num_ops=randaugment[0], magnitude=randaugment[1]))
    return T.Compose([*ops, ToSignedTensor()])


def eval_transform(img_size: int, crop_pct: float = 1.0) -> Callable:
    """Resize to ``img_size`` (official) or resize ``img_size/crop_pct`` + center crop."""
    if crop_pct >= 1.0:
        resize = [T.Resize((img_size, img_size), interpolation=T.InterpolationMode.BILINEAR)]
    else:
        resize = [T.Resize(int(math.floor(img_size / crop_pct)),
                           interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(img_size)]
    return T.Compose([*resize, ToSignedTensor()])
