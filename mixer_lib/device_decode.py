"""Training JPEGs decoded and augmented on the accelerator (issue 17: the input pipeline keeps
up with a fast model). ``RunConfig(decode="device")``.

The loader's CPU workers only read each file's bytes and its size (from the JPEG header),
seed the sample and draw its Inception crop box and flip exactly as the CPU pipeline does
(:class:`mixer_lib.batch_augment.BatchedInceptionCrop`), so every sample is still a function
of (seed, position) and has the CPU pipeline's crop geometry. On the device, one call of
``torchvision.io.decode_jpeg`` decodes the batch (nvJPEG on a GPU), then each crop is resized
(bilinear, antialiased, ``torch.nn.functional.interpolate``), flipped and scaled to [-1, 1].
The pixels differ slightly from Pillow's (another resampler, rounded once instead of per
pass), so a run records ``decode`` in its config: the two pipelines are different
experiments. A file the device decoder refuses (CMYK, or a PNG named .jpg as in ImageNet) is
decoded by Pillow on the CPU instead. (torchvision 0.29 marks its image decoders deprecated
in favour of TorchCodec; they are what the pinned torchvision has.)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from mixer_lib.data import TransformedSubset, sample_files, seed_sample, seeded_rngs
from mixer_lib.datasets import DataError, unreadable_image
from mixer_lib.transforms import ToSignedTensor


@dataclass
class EncodedBatch:
    """A batch as the workers hand it over: encoded files, crop boxes ``(B, 4)`` as (top,
    left, height, width) in decoded pixels, flips ``(B,)``, and the output size."""

    files: list[torch.Tensor]  # each the encoded bytes of one image, uint8 (N,)
    boxes: torch.Tensor
    flips: torch.Tensor
    size: tuple[int, int]
    paths: list[str]  # where each file came from, for error messages

    def pin_memory(self) -> EncodedBatch:
        """DataLoader's pinning hook: encoded bytes are read by the decoder as they are."""
        return self

    def to_images(self, device: torch.device) -> torch.Tensor:
        """Decode, crop, resize, flip and scale on ``device``: ``(B, 3, *size)`` float32 in
        [-1, 1] (the official ``(x - 127.5) / 127.5``)."""
        images = _decode(self.files, self.paths, device)
        out = torch.empty((len(images), 3, *self.size), device=device)
        for b, (img, (top, left, h, w), flip) in enumerate(zip(
                images, self.boxes.tolist(), self.flips.tolist(), strict=True)):
            crop = img[None, :, top:top + h, left:left + w].float()
            crop = F.interpolate(crop, size=self.size, mode="bilinear", align_corners=False,
                                 antialias=True)
            out[b] = crop[0].flip(-1) if flip else crop[0]
        return out.clamp_(0, 255).div_(127.5).sub_(1.0)


def _decode(files: list[torch.Tensor], paths: list[str], device: torch.device
            ) -> list[torch.Tensor]:
    """``(3, H, W)`` uint8 images on ``device``: the whole batch in one decoder call, and a
    file it refuses by Pillow on the CPU."""
    try:
        return list(decode_jpeg(files, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        out = []
        for data, path in zip(files, paths, strict=True):
            try:
                out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                out.append(_pillow_decode(data, path).to(device))
        return out


def _pillow_decode(data: torch.Tensor, path: str) -> torch.Tensor:
    try:
        img = Image.open(io.BytesIO(data.numpy().tobytes())).convert("RGB")
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise unreadable_image(path, err) from err
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()


def to_device(x: torch.Tensor | EncodedBatch, device: torch.device) -> torch.Tensor:
    """A batch's images on ``device``: a float tensor moved there, a uint8 one
    (:meth:`TransformedSubset.hand_over_uint8`) moved and scaled to [-1, 1] there, an
    :class:`EncodedBatch` decoded there."""
    if isinstance(x, EncodedBatch):
        return x.to_images(device)
    x = x.to(device, non_blocking=True)
    return _OFFICIAL.scale(x) if x.dtype == torch.uint8 else x


_OFFICIAL = ToSignedTensor()


class EncodedJpegs(Dataset):
    """A training split (:class:`mixer_lib.data.TransformedSubset` of image files with the
    Inception crop and flip) fetched as encoded files for :meth:`EncodedBatch.to_images`.
    Items are ``(index, seed)`` pairs from the run's sampler, as for the CPU pipeline."""

    def __init__(self, subset: TransformedSubset) -> None:
        crop = subset.inception_crop(max_side=None)
        if crop is None:
            raise DataError("decode='device' decodes and augments on the device with the "
                            "paper's training augmentation only (Inception crop and flip); "
                            "RandAugment and input permutations run on PIL images, so use "
                            "decode='cpu' with them")
        self.crop = crop
        self.files = sample_files(subset)
        self.classes, self.targets = subset.classes, subset.targets

    def __len__(self) -> int:
        return len(self.files)

    def fetch_form(self) -> str:
        return "device-decode"

    def pixels_form(self) -> str:
        return "encoded JPEG, decoded on the device"

    def __getitems__(self, items: Sequence[tuple[int, int]]) -> list[tuple]:
        out = []
        with seeded_rngs():
            for index, seed in items:
                path = self.files[index]
                encoded = np.fromfile(path, dtype=np.uint8)  # the file, read once
                try:
                    with Image.open(io.BytesIO(encoded.tobytes())) as img:  # its header only
                        width, height = img.size
                except Exception as err:  # noqa: BLE001 - re-raised with the file named
                    raise unreadable_image(path, err) from err
                data = torch.from_numpy(encoded)
                seed_sample(seed)
                box, flip = self.crop.draw(height, width)
                out.append((data, box, flip, self.targets[index], path))
        return out

    def __getitem__(self, item: tuple[int, int]) -> tuple:
        return self.__getitems__([item])[0]

    def collate(self, samples: list[tuple]) -> tuple[EncodedBatch, torch.Tensor]:
        """The loader's ``collate_fn``: samples -> (:class:`EncodedBatch`, labels)."""
        files, boxes, flips, labels, paths = zip(*samples, strict=True)
        batch = EncodedBatch(list(files), torch.tensor(boxes, dtype=torch.int64),
                             torch.tensor(flips, dtype=torch.bool), self.crop.size,
                             list(paths))
        return batch, torch.tensor(labels, dtype=torch.int64)
