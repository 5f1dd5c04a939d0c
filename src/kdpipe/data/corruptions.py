"""A corruption suite generated on the fly: what a student meets on an inspection line, at five severities.

The kinds follow ImageNet-C (Hendrycks & Dietterich, ICLR 2019) and MNIST-C (Mu & Gilmer, 2019):
noise, blur, photometric, digital, geometric and occlusion. Each corruption takes a whole split
as float images ``N x C x H x W`` in [0, 1] (any channel count, any size) and works on it with
batched torch ops; :func:`corrupt` takes and returns uint8 images, as stored data would be. The
randomness comes from one ``torch.Generator`` seeded by (seed, corruption, severity): the same seed
gives identical tensors on every run and machine, another seed other noise. Sizes in pixels scale
with the image (they are given for 28 px).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from kdpipe.infra.factories import Factories

SEVERITIES = (1, 2, 3, 4, 5)
FAST_SEVERITY = 3  # `validate.corruptions: fast` measures each corruption at this severity only

Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
CORRUPTIONS: Factories[torch.Tensor] = Factories("corruption")


def _level(values: tuple[float, ...], severity: int) -> float:
    return values[severity - 1]


def _px(x: torch.Tensor, at_28: float) -> float:
    """A size given for 28-pixel images, scaled to these images."""
    return at_28 * min(x.shape[-2:]) / 28


def _signs(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample each image through its own 2x3 matrix (output -> input coordinates), zeros outside."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@CORRUPTIONS.register("gaussian_noise")
def gaussian_noise(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Sensor noise: x + N(0, sigma^2), sigma 0.04, 0.08, 0.12, 0.18, 0.26."""
    sigma = _level((0.04, 0.08, 0.12, 0.18, 0.26), severity)
    return x + torch.randn(x.shape, generator=gen) * sigma


@CORRUPTIONS.register("shot_noise")
def shot_noise(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Photon noise in low light: Poisson(x * lam) / lam, lam 80, 30, 12, 6, 3."""
    lam = _level((80, 30, 12, 6, 3), severity)
    return torch.poisson(x * lam, generator=gen) / lam


@CORRUPTIONS.register("impulse_noise")
def impulse_noise(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Dead and hot pixels (salt and pepper): a share 0.01, 0.03, 0.05, 0.08, 0.12 of values set to 0 or 1."""
    amount = _level((0.01, 0.03, 0.05, 0.08, 0.12), severity)
    hit = torch.rand(x.shape, generator=gen) < amount
    salt = torch.rand(x.shape, generator=gen) < 0.5
    return torch.where(hit, salt.float(), x)


@CORRUPTIONS.register("gaussian_blur")
def gaussian_blur(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """An out-of-focus lens: a Gaussian blur, sigma 0.5, 0.75, 1.0, 1.3, 1.7 px."""
    sigma = _px(x, _level((0.5, 0.75, 1.0, 1.3, 1.7), severity))
    size = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(x, [size, size], [sigma, sigma])


@CORRUPTIONS.register("motion_blur")
def motion_blur(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Camera or part motion: a line kernel of length 3, 5, 7, 9, 11 px at a random angle per image."""
    length = max(3.0, _px(x, _level((3, 5, 7, 9, 11), severity)))
    k = 2 * math.ceil(length / 2) + 1
    n, c = x.shape[:2]
    angle = torch.rand(n, generator=gen) * math.pi
    r = torch.arange(k, dtype=torch.float32) - k // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    cos, sin = angle.cos().view(n, 1, 1), angle.sin().view(n, 1, 1)
    along, across = xx * cos + yy * sin, -xx * sin + yy * cos
    kernel = (1 - across.abs()).clamp_min(0) * (along.abs() <= length / 2)
    kernel = kernel / kernel.sum((1, 2), keepdim=True)
    weight = kernel.repeat_interleave(c, 0).unsqueeze(1)
    out = F.conv2d(F.pad(x.reshape(1, n * c, *x.shape[2:]), [k // 2] * 4, mode="replicate"), weight, groups=n * c)
    return out.reshape(x.shape)


@CORRUPTIONS.register("brightness")
def brightness(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """More light: + 0.08, 0.16, 0.24, 0.32, 0.40 on every value."""
    return x + _level((0.08, 0.16, 0.24, 0.32, 0.40), severity)


@CORRUPTIONS.register("contrast")
def contrast(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Flat light: values pulled to each image's mean, keeping 0.75, 0.6, 0.45, 0.3, 0.15 of the contrast."""
    keep = _level((0.75, 0.6, 0.45, 0.3, 0.15), severity)
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * keep + mean


@CORRUPTIONS.register("jpeg")
def jpeg(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Compression on the way from the camera: JPEG at quality 80, 60, 40, 25, 12."""
    quality = int(_level((80, 60, 40, 25, 12), severity))
    as_bytes = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its codecs for torchcodec, once per image
        warnings.simplefilter("ignore", DeprecationWarning)
        return TF.jpeg(as_bytes, quality).float() / 255


@CORRUPTIONS.register("pixelate")
def pixelate(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """A lower-resolution sensor: down to 0.78, 0.6, 0.46, 0.36, 0.27 of the size (area), back up (nearest).

    (At 28 px: 22, 17, 13, 10, 8 px, none dividing 28, whose clean 2x2 blocks would undo the order.)"""
    factor = _level((0.78, 0.6, 0.46, 0.36, 0.27), severity)
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, round(h * factor)), max(1, round(w * factor))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


@CORRUPTIONS.register("elastic")
def elastic(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """A flexible part or a wobbling lens: a smooth random displacement field of at most 1, 1.75, 2.5, 3.25, 4 px."""
    n, _, h, w = x.shape
    alpha = _px(x, _level((1.0, 1.75, 2.5, 3.25, 4.0), severity))
    field = torch.rand((n, 2, h, w), generator=gen) * 2 - 1
    sigma = _px(x, 3.0)
    size = 2 * math.ceil(2 * sigma) + 1
    field = TF.gaussian_blur(field, [size, size], [sigma, sigma])
    field = field / field.abs().amax((1, 2, 3), keepdim=True).clamp_min(1e-8) * alpha
    scale = torch.tensor([2 / w, 2 / h]).view(1, 2, 1, 1)
    identity = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), [n, 1, h, w], align_corners=False)
    grid = identity + (field * scale).permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@CORRUPTIONS.register("rotate")
def rotate(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """A part or camera turned: +/- 8, 16, 24, 32, 40 degrees (random sign per image)."""
    angle = _signs(len(x), gen) * math.radians(_level((8, 16, 24, 32, 40), severity))
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros(len(x))
    return _affine(x, torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1))


@CORRUPTIONS.register("shear")
def shear(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """A camera at an angle: horizontal shear 0.1, 0.2, 0.3, 0.4, 0.5 (random sign per image)."""
    s = _signs(len(x), gen) * _level((0.1, 0.2, 0.3, 0.4, 0.5), severity)
    one, zero = torch.ones(len(x)), torch.zeros(len(x))
    return _affine(x, torch.stack([torch.stack([one, s, zero], 1), torch.stack([zero, one, zero], 1)], 1))


@CORRUPTIONS.register("scale")
def scale(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """A camera further away: the content shrunk to 0.9, 0.8, 0.7, 0.6, 0.5 of its size, centred."""
    inv = torch.full((len(x),), 1 / _level((0.9, 0.8, 0.7, 0.6, 0.5), severity))
    zero = torch.zeros(len(x))
    return _affine(x, torch.stack([torch.stack([inv, zero, zero], 1), torch.stack([zero, inv, zero], 1)], 1))


@CORRUPTIONS.register("translate")
def translate(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """A part off centre: shifted by 0.05, 0.1, 0.15, 0.2, 0.25 of the image in a random direction."""
    direction = torch.rand(len(x), generator=gen) * 2 * math.pi
    shift = 2 * _level((0.05, 0.1, 0.15, 0.2, 0.25), severity)
    one, zero = torch.ones(len(x)), torch.zeros(len(x))
    tx, ty = direction.cos() * shift, direction.sin() * shift
    return _affine(x, torch.stack([torch.stack([one, zero, tx], 1), torch.stack([zero, one, ty], 1)], 1))


@CORRUPTIONS.register("stripes")
def stripes(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Occlusion by wires or a dirty guard: 1, 2, 3, 4, 5 black stripes 2 px wide, horizontal or vertical."""
    n, _, h, w = x.shape
    count, width = int(_level((1, 2, 3, 4, 5), severity)), max(1, round(_px(x, 2)))
    vertical = torch.rand(n, generator=gen) < 0.5
    start = (torch.rand((n, count), generator=gen) * (min(h, w) - width)).long()
    pos_h, pos_w = torch.arange(h).view(1, 1, h, 1), torch.arange(w).view(1, 1, 1, w)
    starts = start.view(n, count, 1, 1)
    rows = ((pos_h >= starts) & (pos_h < starts + width)).any(1, keepdim=True)
    cols = ((pos_w >= starts) & (pos_w < starts + width)).any(1, keepdim=True)
    hit = torch.where(vertical.view(n, 1, 1, 1), cols.expand(n, 1, h, w), rows.expand(n, 1, h, w))
    return x.masked_fill(hit, 0.0)


def generator(seed: int, name: str, severity: int, part: int = 0) -> torch.Generator:
    """The one source of randomness of (seed, corruption, severity) and, for a streamed split corrupted part by
    part, the part's index (part 0 draws as a whole split always has): stable across runs and machines."""
    offset = CORRUPTIONS.names().index(name)
    return torch.Generator().manual_seed(seed * 1_000_003 + offset * 101 + severity + part * 7_919)


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0, part: int = 0) -> torch.Tensor:
    """``images`` (uint8, N x C x H x W) with corruption ``name`` at ``severity`` 1-5, as uint8; ``part``: which
    part of a streamed split they are (:func:`generator`)."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    x = images.float() / 255
    out = CORRUPTIONS.get(name)(x, severity, generator(seed, name, severity, part))
    return (out.clamp(0, 1) * 255).round().to(torch.uint8)
