"""Write a 224-px-class example of a team's data: Fashion-MNIST training images as a line camera's JPEG frames.

Each 28-px image is upsampled to a ``--width`` x ``--height`` RGB frame (320 x 240 by default: the shorter
side above 256, as a camera's would be), tinted, lit and shifted a little differently per frame, with sensor
noise, and saved as JPEG at ``--quality`` in one folder per class (``kdpipe.data.operational.folder_name``):
the layout ``data.source: imagefolder`` reads. Deterministic: the same ``--seed`` writes the same files.
``benchmarks/data_scale.py`` and ``benchmarks/loader.py --case 224`` use it.

    python scripts/line_camera_set.py --out data/line-camera --count 5000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from kdpipe.data.operational import folder_name
from kdpipe.data.sources import load_source


def frame(grey: np.ndarray, rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """One 28-px grey image as a camera frame: tinted RGB, lit, shifted and noisy."""
    tint = rng.uniform(0.6, 1.0, size=3)
    light = rng.uniform(0.8, 1.2)
    rgb = np.clip(grey[..., None].astype(np.float32) * tint * light, 0, 255).astype(np.uint8)
    pic = Image.fromarray(rgb).resize((width, height), Image.BILINEAR)
    dx, dy = (int(v) for v in rng.integers(-width // 16, width // 16 + 1, size=2))
    pic = pic.rotate(0, translate=(dx, dy), fillcolor=(0, 0, 0))
    noisy = np.asarray(pic, dtype=np.float32) + rng.normal(0, 4, size=(height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="the set's root (class folders are made in it)")
    parser.add_argument("--count", type=int, default=5000, help="frames, at most 60,000 (default: 5000)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default: 90)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default="data/raw", help="where Fashion-MNIST is staged (default: data/raw)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raw = load_source("fashion_mnist", args.root)
    if not 0 < args.count <= len(raw.train_y):
        print(f"--count: between 1 and {len(raw.train_y)}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    for k in range(args.count):
        folder = args.out / folder_name(raw.classes[int(raw.train_y[k])])
        folder.mkdir(parents=True, exist_ok=True)
        pic = frame(raw.train_x[k, 0].numpy(), rng, args.width, args.height)
        pic.save(folder / f"frame{k:06d}.jpg", quality=args.quality)
    print(f"wrote {args.count} frames of {args.width}x{args.height} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
