"""The batched Inception crop and flip give Pillow's and torchvision's samples to the bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from mixer_lib.batch_augment import (
    BatchedInceptionCrop,
    pil_bilinear_weights,
    upscaled_crops,
)


def _pillow(pixels: np.ndarray, box, flip: bool, size) -> np.ndarray:
    top, left, h, w = box
    img = Image.fromarray(pixels).crop((left, top, left + w, top + h))
    img = img.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(img.transpose(Image.FLIP_LEFT_RIGHT) if flip else img)


@pytest.mark.parametrize("image, size", [((32, 32), (32, 32)), ((20, 30), (24, 40)),
                                         ((32, 32), (64, 64))])
def test_upscaled_crops_equal_pillow_for_every_crop_size(image, size):
    """Every crop height and width that fits the output, at random offsets, flipped or not:
    the same bytes as Pillow's crop, bilinear resize and mirror."""
    rng = np.random.default_rng(0)
    boxes = [(int(rng.integers(0, image[0] - h + 1)), int(rng.integers(0, image[1] - w + 1)),
              h, w)
             for h in range(1, min(image[0], size[0]) + 1)
             for w in range(1, min(image[1], size[1]) + 1)]
    pixels = rng.integers(0, 256, (len(boxes), *image, 3), dtype=np.uint8)
    flips = rng.integers(0, 2, len(boxes)).astype(bool).tolist()
    got = upscaled_crops(torch.from_numpy(pixels), boxes, flips, size)
    assert got.dtype == torch.uint8 and got.shape == (len(boxes), *size, 3)
    want = np.stack([_pillow(p, b, f, size) for p, b, f in zip(pixels, boxes, flips,
                                                                 strict=True)])
    assert np.array_equal(got.numpy(), want)


def test_upscaled_crops_refuse_a_crop_that_shrinks():
    with pytest.raises(ValueError, match="must fit"):
        upscaled_crops(torch.zeros(1, 40, 40, 3, dtype=torch.uint8), [(0, 0, 40, 10)], [False],
                       (32, 32))


def test_weights_are_pillows_fixed_point():
    """Identity for equal sizes; every row sums to 2**22 within rounding; a halving widens
    the triangle to two pixels each side (first output pixel centred on input 1.0: weights
    0.75, 0.75, 0.25 over 1.75, i.e. 3/7, 3/7, 1/7 of 2**22, rounded)."""
    assert torch.equal(pil_bilinear_weights(7, 7), torch.eye(7, dtype=torch.float64) * 2**22)
    for n, out in ((5, 32), (32, 24), (13, 13)):
        sums = pil_bilinear_weights(n, out).sum(1)
        assert (sums - 2**22).abs().max() <= n
    assert pil_bilinear_weights(8, 4)[0].tolist() == [1797559, 1797559, 599186, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("image", [(32, 32), (48, 40), (20, 30), (3, 60), (60, 3)])
@pytest.mark.parametrize("flip", [True, False])
def test_draw_and_apply_give_torchvisions_samples(image, flip):
    """Seeded per sample, :meth:`draw` makes torchvision's draws (the fallback crop of thin
    images included) and :meth:`apply` gives the transform's pixels, for crops that enlarge
    (batched) and crops that shrink (Pillow)."""
    steps = [T.RandomResizedCrop(32, scale=(0.05, 1.0), ratio=(3 / 4, 4 / 3))]
    steps += [T.RandomHorizontalFlip()] if flip else []
    transform = T.Compose(steps)
    batched = BatchedInceptionCrop.of(steps)
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (120, *image, 3), dtype=np.uint8)
    want, draws = [], []
    for k in range(len(pixels)):
        torch.manual_seed(10_000 + k)
        want.append(np.asarray(transform(Image.fromarray(pixels[k]))))
        torch.manual_seed(10_000 + k)
        draws.append(batched.draw(*image))
        torch.manual_seed(10_000 + k)
        box = T.RandomResizedCrop.get_params(torch.empty(3, *image), [0.05, 1.0], [3 / 4, 4 / 3])
        assert draws[-1][0] == box
    assert np.array_equal(batched.apply(torch.from_numpy(pixels), draws).numpy(),
                          np.stack(want))


def test_of_takes_only_what_it_reproduces():
    crop = T.RandomResizedCrop(32, interpolation=T.InterpolationMode.BILINEAR)
    assert BatchedInceptionCrop.of([crop]) is not None
    assert BatchedInceptionCrop.of([crop, T.RandomHorizontalFlip(0.3)]).flip_p == 0.3
    for steps in ([], [T.RandomHorizontalFlip()], [crop, T.RandAugment()],
                  [crop, T.RandomHorizontalFlip(), T.RandAugment()],
                  [T.RandomResizedCrop(32, interpolation=T.InterpolationMode.BICUBIC)],
                  [T.RandomResizedCrop(224)]):
        assert BatchedInceptionCrop.of(steps) is None
