"""The views of stored images: each crop box and flip a pure function of (view seed, epoch, image index).

Training takes a random resized crop and a flip (Szegedy et al., CVPR 2015; torchvision's ``RandomResizedCrop``
rule: area share in ``SCALE``, aspect ratio log-uniform in ``RATIO``, ten tries, then the central crop at the
nearest allowed ratio), resized to the training size. Evaluation takes the central square of the training size
from images stored at ``stored_size`` (8/7 of it by default: the "resize 256, crop 224" convention).

The random numbers are not drawn from a stream: each is SplitMix64 (Steele, Lea & Flood, OOPSLA 2014) of a
counter built from (seed, epoch, index, draw). So a view does not depend on which images share its batch, on
the rank that reads it or on the order of reading, and the teacher-output cache keys it exactly, as FKD
(Shen & Xing, ECCV 2022) stores region coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
TRIES = 10
SCHEME = "rrc-splitmix64-v1"
"""The name of this view scheme, in the teacher-output cache key: the in-memory loader's random stream and
these per-image boxes differ, so an entry of one is never replayed for the other."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_DRAWS = 4 * TRIES + 1  # per try: area, ratio, top, left; and the flip


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, epoch: int, index: np.ndarray, draws: int) -> np.ndarray:
    """``[len(index), draws]`` numbers in [0, 1), each a pure function of (seed, epoch, index, draw)."""
    with np.errstate(over="ignore"):
        key = _splitmix64(np.full(1, seed & (2**64 - 1), dtype=np.uint64))
        key = _splitmix64(key ^ np.uint64(epoch & (2**64 - 1)))
        key = _splitmix64(key ^ np.asarray(index, dtype=np.uint64))
        counters = key[:, None] + np.arange(1, draws + 1, dtype=np.uint64)[None, :] * _GOLDEN
        bits = _splitmix64(counters) >> np.uint64(11)
    return bits.astype(np.float64) / float(2**53)


@dataclass(frozen=True)
class Views:
    """One view per image: ``boxes`` ``[n, 4]`` as (top, left, height, width) in stored pixels, ``flips`` ``[n]``."""

    boxes: np.ndarray
    flips: np.ndarray


def train_views(seed: int, epoch: int, index: np.ndarray, height: int, width: int, hflip: bool) -> Views:
    """Random resized crops (and flips when ``hflip``) of ``height x width`` images, for these image indices."""
    u = uniforms(seed, epoch, index, _DRAWS)
    n, area = len(index), height * width
    boxes = np.zeros((n, 4), dtype=np.int64)
    found = np.zeros(n, dtype=bool)
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    for t in range(TRIES):
        a, r, top, left = (u[:, 4 * t + k] for k in range(4))
        target = area * (SCALE[0] + a * (SCALE[1] - SCALE[0]))
        aspect = np.exp(log_lo + r * (log_hi - log_lo))
        w = np.rint(np.sqrt(target * aspect)).astype(np.int64)
        h = np.rint(np.sqrt(target / aspect)).astype(np.int64)
        ok = ~found & (w > 0) & (w <= width) & (h > 0) & (h <= height)
        i = np.floor(top * (height - h + 1)).astype(np.int64)
        j = np.floor(left * (width - w + 1)).astype(np.int64)
        boxes[ok] = np.stack([i, j, h, w], axis=1)[ok]
        found |= ok
    if not found.all():
        boxes[~found] = central_box(height, width)
    flips = (u[:, -1] < 0.5) if hflip else np.zeros(n, dtype=bool)
    return Views(boxes, flips)


def central_box(height: int, width: int) -> np.ndarray:
    """torchvision's fallback: the whole image, cut to the nearest ratio in ``RATIO``, centred."""
    ratio = width / height
    if ratio < RATIO[0]:
        w, h = width, round(width / RATIO[0])
    elif ratio > RATIO[1]:
        h, w = height, round(height * RATIO[1])
    else:
        h, w = height, width
    return np.array([(height - h) // 2, (width - w) // 2, h, w], dtype=np.int64)


def resized_crop(image: torch.Tensor, views: Views, k: int, size: int) -> torch.Tensor:
    """View ``k`` of one ``[C, H, W]`` image: its box resized to ``size x size`` (bilinear, antialiased, uint8 in
    and out), flipped where asked.

    On the CPU the box goes to torch's uint8 resize as a channels-last copy, the layout that kernel works in: the
    same pixels as torchvision's ``resized_crop`` on an AVX2 CPU (``tests/test_store.py``), and the whole view
    step about 1.1x as fast for it (``benchmarks/views.py``). Elsewhere torchvision's own, which resizes uint8
    through float off the CPU."""
    top, left, height, width = (int(v) for v in views.boxes[k])
    if image.device.type == "cpu":
        box = image[None, :, top : top + height, left : left + width].contiguous(memory_format=torch.channels_last)
        out = torch.nn.functional.interpolate(box, size=(size, size), mode="bilinear", antialias=True)[0]
    else:
        from torchvision.transforms.v2 import functional as tvf

        out = tvf.resized_crop(image, top, left, height, width, [size, size], antialias=True)
    return out.flip(-1) if views.flips[k] else out


def resized_crops(images: torch.Tensor, views: Views, size: int) -> torch.Tensor:
    """:func:`resized_crop` of each image (the boxes differ, so one image at a time), stacked."""
    return torch.stack([resized_crop(image, views, k, size) for k, image in enumerate(images)])


def center_crops(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` square of each image (evaluation)."""
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top : top + size, left : left + size]
