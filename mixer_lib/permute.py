"""Fixed input permutations of paper Section 3.4 / Figure 4.

* ``patch_pixel``: shuffle the order of the ``patch x patch`` patches and, with a second
  permutation, the pixels inside every patch (the same permutations for every image);
* ``global``: shuffle all pixels of the image with one permutation.

Both are applied to ``(3, H, W)`` tensors after preprocessing and keep the channels of a
pixel together.
"""

from __future__ import annotations

import torch
from einops import rearrange

PERMUTATIONS = ("none", "patch_pixel", "global")


class FixedPermutation:
    """Callable ``(3, H, W) -> (3, H, W)`` applying one fixed pixel permutation."""

    def __init__(self, kind: str, img_size: int, patch: int, seed: int = 0) -> None:
        if kind not in PERMUTATIONS:
            raise ValueError(f"unknown permutation {kind!r}; choose one of "
                             f"{', '.join(PERMUTATIONS)}")
        if img_size % patch:
            raise ValueError(f"img_size {img_size} is not a multiple of patch {patch}")
        self.kind, self.img_size, self.patch = kind, img_size, patch
        g = torch.Generator().manual_seed(seed)
        n = img_size // patch
        self.patch_order = torch.randperm(n * n, generator=g)
        self.pixel_order = torch.randperm(patch * patch, generator=g)
        self.global_order = torch.randperm(img_size * img_size, generator=g)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        if self.kind == "global":
            flat = x.reshape(x.shape[0], -1)[:, self.global_order]
            return flat.reshape(x.shape)
        p, n = self.patch, self.img_size // self.patch
        patches = rearrange(x, "c (h p1) (w p2) -> (h w) (p1 p2) c", p1=p, p2=p)
        patches = patches[self.patch_order][:, self.pixel_order]
        return rearrange(patches, "(h w) (p1 p2) c -> c (h p1) (w p2)", h=n, w=n, p1=p, p2=p)
