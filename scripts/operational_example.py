"""Write an example operational set: Fashion-MNIST test images "re-photographed" by a shifted camera.

Each image goes through what a second inspection camera might do to it: more light (brightness,
severity 2), a slightly soft lens (Gaussian blur, severity 2), a part turned on the belt (rotation,
severity 1, +/-8 degrees), then a sensor of twice the resolution in colour (56 x 56 RGB). The result
is an ImageFolder of PNGs, one folder per class (``kdpipe.data.operational.folder_name``), which
``validate.operational`` reads back like any field data: resized to 28 x 28 and converted to grey.
Deterministic: the same ``--seed`` writes the same pixels.

    python scripts/operational_example.py --out data/operational/fashion-reshot [--count 10000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from kdpipe.config import DEFAULT_PARAMS, load_params
from kdpipe.data.corruptions import corrupt
from kdpipe.data.operational import folder_name
from kdpipe.data.sources import load_source

SHIFT = (("brightness", 2), ("gaussian_blur", 2), ("rotate", 1))  # (corruption, severity), applied in order
CAMERA_SIZE = 56


def reshoot(images: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 grey 28 x 28 images as the second camera sees them: uint8 RGB at CAMERA_SIZE."""
    for name, severity in SHIFT:
        images = corrupt(images, name, severity, seed)
    return TF.resize(images, [CAMERA_SIZE, CAMERA_SIZE], antialias=True).expand(-1, 3, -1, -1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the ImageFolder to write (replaced when complete)")
    parser.add_argument("--root", help="Fashion-MNIST raw directory (default: data.root of --params, else data/raw)")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="params file naming data.root")
    parser.add_argument("--count", type=int, default=10_000, help="test images to re-photograph (default: all 10,000)")
    parser.add_argument("--seed", type=int, default=0, help="picks the images and the shift's randomness")
    args = parser.parse_args(argv)
    root = args.root or (load_params(args.params).data.root if args.params.exists() else None)
    raw = load_source("fashion_mnist", root)
    if not 0 < args.count <= len(raw.test_y):
        parser.error(f"--count must lie in 1..{len(raw.test_y)}")
    pick = (
        torch.randperm(len(raw.test_y), generator=torch.Generator().manual_seed(args.seed))[: args.count].sort().values
    )
    images, labels = reshoot(raw.test_x[pick], args.seed), raw.test_y[pick]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{args.out.name}.", dir=args.out.parent))
    try:
        for name in raw.classes:
            (staging / folder_name(name)).mkdir()
        for i, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
            Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB").save(
                staging / folder_name(raw.classes[label]) / f"{int(pick[i]):05d}.png"
            )
        previous = args.out.with_name(f".{args.out.name}.previous")
        if args.out.exists():  # moved aside, not deleted, until the new set is in place
            shutil.rmtree(previous, ignore_errors=True)
            args.out.rename(previous)
        staging.rename(args.out)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(
        f"wrote {args.count:,} re-photographed Fashion-MNIST test images ({CAMERA_SIZE}x{CAMERA_SIZE} RGB PNG, "
        f"{', '.join(f'{n} s{s}' for n, s in SHIFT)}) to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
