"""The Inception crop and horizontal flip of a whole batch of decoded images at once, bit for
bit what torchvision's ``RandomResizedCrop`` (bilinear, on PIL images) and
``RandomHorizontalFlip`` give sample by sample (issue 17: the study's loader on 32 px CIFAR).

Per sample only the random draws remain: each sample's generator is seeded with its own
seed and draws its crop box and flip with the calls torchvision's transforms make
(:meth:`BatchedInceptionCrop.draw`). The pixels of the whole batch are then resampled in two
passes, as Pillow's 8-bit bilinear resize computes them: a horizontal pass, the intermediate
rounded and clipped to 8 bits, then a vertical pass, with Pillow's fixed-point weights
(:func:`pil_bilinear_weights`). An enlarging crop reads at most two input pixels per output
pixel, so each pass is two gathers and a weighted sum in int32 (every sum below 2**31, so
exact), which is why the result equals Pillow's to the bit; ``tests/test_batch_augment.py``
checks that against Pillow. A crop larger than the output (never, for the study's 32 px
images at 32 px) is left to Pillow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

PRECISION_BITS = 22  # Pillow's fixed point for 8-bit resampling: 32 - 8 - 2 bits
MAX_OUTPUT_SIDE = 64  # larger outputs (e.g. 32 px images at 224) stay with per-sample Pillow


@cache
def pil_bilinear_weights(in_size: int, out_size: int) -> torch.Tensor:
    """``(out_size, in_size)`` float64 matrix of the integer weights (scaled by 2**22) that
    Pillow's 8-bit bilinear resize gives each input pixel of a line, for one output pixel
    per row: its support, weights normalised to sum 1, then rounded half away from zero."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear (triangle) filter's support is 1
    inv = 1.0 / filterscale
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    for out in range(out_size):
        center = (out + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        taps = [max(0.0, 1.0 - abs((x - center + 0.5) * inv)) for x in range(lo, hi)]
        total = 0.0
        for w in taps:
            total += w
        for k, w in enumerate(taps):
            w = w / total if total != 0.0 else w
            # rounded half away from zero (a triangle filter's weights are never negative)
            weights[out, lo + k] = float(int(0.5 + w * (1 << PRECISION_BITS)))
    return torch.from_numpy(weights)


@cache
def _tap_table(out_size: int, max_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every input length ``n <= max_in <= out_size`` (an enlargement): the two input
    pixels each output pixel reads and their weights, ``(max_in + 1, 2, out_size)`` int64
    indices and int32 weights, from :func:`pil_bilinear_weights` (a triangle filter that
    enlarges touches at most two input pixels; a single one gets weight 0 for its second)."""
    index = torch.zeros(max_in + 1, 2, out_size, dtype=torch.int64)
    weight = torch.zeros(max_in + 1, 2, out_size, dtype=torch.int32)
    for n in range(1, max_in + 1):
        w = pil_bilinear_weights(n, out_size)
        for out in range(out_size):
            taps = w[out].nonzero().flatten().tolist()
            if len(taps) > 2:
                raise AssertionError(f"{n} -> {out_size}: {len(taps)} taps, expected <= 2")
            taps = (taps + taps)[:2]
            index[n, :, out] = torch.tensor(taps)
            weight[n, 0, out] = int(w[out, taps[0]])
            weight[n, 1, out] = int(w[out, taps[1]]) if taps[1] != taps[0] else 0
    return index, weight


def _resample(x: torch.Tensor, dim: int, index: torch.Tensor, weight: torch.Tensor,
              ) -> torch.Tensor:
    """One pass of Pillow's 8-bit resample along ``dim`` of ``x (B, H, W, 3)`` int32, each
    output pixel from two taps, ``index``/``weight (B, 2, out)``: ``clip8`` of the weighted
    sum, ``(sum + 2**21) >> 22`` clipped to [0, 255]. Exact: every sum is below 2**31."""
    shape = list(x.shape)
    shape[dim] = index.shape[-1]
    view = [x.shape[0], 1, 1, 1]
    view[dim] = index.shape[-1]
    total = torch.full(shape, 1 << (PRECISION_BITS - 1), dtype=torch.int32)
    for k in range(2):
        taps = x.gather(dim, index[:, k].reshape(view).expand(shape))
        total.addcmul_(taps, weight[:, k].reshape(view))
    return total.bitwise_right_shift_(PRECISION_BITS).clamp_(0, 255)


def upscaled_crops(pixels: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]],
                   flips: Sequence[bool], size: tuple[int, int]) -> torch.Tensor:
    """``pixels (B, H, W, 3)`` uint8, ``boxes`` of ``(top, left, height, width)`` per image,
    none larger than ``size``, ``flips`` per image -> ``(B, size[0], size[1], 3)`` uint8:
    each box cropped, resized bilinearly to ``size`` as Pillow does (the horizontal pass
    first: Pillow 13 starts with the vertical one only when it shrinks the height, which an
    enlargement never does), then mirrored where ``flips`` says."""
    out_h, out_w = size
    box = torch.tensor(boxes, dtype=torch.int64).reshape(-1, 4)
    if (box[:, 2] > out_h).any() or (box[:, 3] > out_w).any():
        raise ValueError(f"upscaled_crops: every box must fit in {size}; shrinking crops "
                         f"take Pillow's own path (BatchedInceptionCrop.apply)")
    rows, row_w = _tap_table(out_h, out_h)
    cols, col_w = _tap_table(out_w, out_w)
    rows, row_w = rows[box[:, 2]] + box[:, 0, None, None], row_w[box[:, 2]]
    cols, col_w = cols[box[:, 3]] + box[:, 1, None, None], col_w[box[:, 3]]
    flip = torch.tensor(list(flips), dtype=torch.bool)
    cols[flip], col_w[flip] = cols[flip].flip(-1), col_w[flip].flip(-1)
    x = _resample(pixels.to(torch.int32), 2, cols, col_w)  # horizontal pass
    return _resample(x, 1, rows, row_w).to(torch.uint8)  # vertical pass


class BatchedInceptionCrop:
    """A training transform ``Compose([RandomResizedCrop(size, scale, ratio, bilinear),
    RandomHorizontalFlip(p)?, ...])`` applied to a batch: :meth:`draw` per sample (after its
    seed), :meth:`apply` once for the batch. Build with :meth:`of`, which returns None
    for transforms it does not reproduce (other interpolations, RandAugment, ...)."""

    def __init__(self, crop: T.RandomResizedCrop, flip_p: float | None) -> None:
        self.size = tuple(crop.size)
        self.scale, self.ratio = tuple(crop.scale), tuple(crop.ratio)
        # the bounds torchvision draws the log aspect ratio between: float32 logs
        self.log_ratio = tuple(float(v) for v in torch.log(torch.tensor(self.ratio)))
        self.flip_p = flip_p

    @classmethod
    def of(cls, steps: Sequence[object], max_side: int | None = MAX_OUTPUT_SIDE,
           ) -> BatchedInceptionCrop | None:
        """The batched form of the pixel ``steps`` (a crop, optionally a flip), or None;
        also None for outputs larger than ``max_side`` (None: any size)."""
        if not steps or type(steps[0]) is not T.RandomResizedCrop or len(steps) > 2:
            return None
        crop = steps[0]
        if crop.interpolation != T.InterpolationMode.BILINEAR or \
                (max_side is not None and max(crop.size) > max_side):
            return None
        if len(steps) == 2 and type(steps[1]) is not T.RandomHorizontalFlip:
            return None
        return cls(crop, steps[1].p if len(steps) == 2 else None)

    def draw(self, height: int, width: int) -> tuple[tuple[int, int, int, int], bool]:
        """One sample's crop box ``(top, left, h, w)`` and flip, drawn from torch's default
        generator with the calls, in the order, that ``RandomResizedCrop.get_params`` and
        ``RandomHorizontalFlip`` make (the test compares the two)."""
        box = self._box(height, width)
        flip = self.flip_p is not None and bool(torch.rand(1) < self.flip_p)
        return box, flip

    def apply(self, pixels: torch.Tensor,
              draws: Sequence[tuple[tuple[int, int, int, int], bool]]) -> torch.Tensor:
        """``pixels (B, H, W, 3)`` uint8 and each image's :meth:`draw` -> ``(B, *size, 3)``
        uint8. Crops no larger than the output are resampled together
        (:func:`upscaled_crops`); a crop that shrinks an axis goes through Pillow itself, as
        torchvision would (which pass Pillow runs first there depends on its version)."""
        out = torch.empty((pixels.shape[0], *self.size, 3), dtype=torch.uint8)
        fits = [h <= self.size[0] and w <= self.size[1] for (_, _, h, w), _ in draws]
        batched = [b for b, ok in enumerate(fits) if ok]
        if batched:
            out[batched] = upscaled_crops(pixels[batched], [draws[b][0] for b in batched],
                                          [draws[b][1] for b in batched], self.size)
        for b in (b for b, ok in enumerate(fits) if not ok):
            (top, left, h, w), flip = draws[b]
            img = F.resized_crop(Image.fromarray(pixels[b].numpy(), "RGB"), top, left, h, w,
                                 list(self.size), T.InterpolationMode.BILINEAR)
            out[b] = torch.from_numpy(np.array(F.hflip(img) if flip else img, np.uint8))
        return out

    def _box(self, height: int, width: int) -> tuple[int, int, int, int]:
        area = height * width
        for _ in range(10):
            target = area * torch.empty(1).uniform_(self.scale[0], self.scale[1]).item()
            aspect = torch.exp(torch.empty(1).uniform_(*self.log_ratio)).item()
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, size=(1,)).item())
                left = int(torch.randint(0, width - w + 1, size=(1,)).item())
                return top, left, h, w
        # after ten rejected draws, torchvision's fallback: the central crop of the ratio range
        in_ratio = float(width) / float(height)
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            h, w = height, int(round(height * max(self.ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w
