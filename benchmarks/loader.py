"""Images/s of kdpipe's data paths against torchvision's Dataset + DataLoader, in one process.

``--case 28`` (the default): both read the same Fashion-MNIST training images and apply the same augmentation
(random crop with 2 pixels of zero padding, horizontal flip, normalisation). kdpipe keeps uint8 tensors in memory
and augments whole batches (:class:`kdpipe.data.loader.InMemoryLoader`); the baseline is the usual per-image
pipeline: ``torchvision.datasets.FashionMNIST`` with ``RandomCrop(28, padding=2)``, ``RandomHorizontalFlip``,
``ToTensor``, ``Normalize`` and a ``DataLoader`` with worker processes.

``--case 224``: ``scripts/line_camera_set.py``'s JPEG frames (320 x 240), prepared once into the disk store at
256; kdpipe's :class:`kdpipe.data.streaming.StreamingLoader` (random resized crop to 224 and flip, on
``--device``) against ``ImageFolder`` with ``RandomResizedCrop(224)``, ``RandomHorizontalFlip``, ``ToTensor``,
``Normalize`` and a ``DataLoader`` of ``--workers`` processes (the batches moved to ``--device``). The floor: the
same shard bytes read from a warm ``np.memmap`` in the same random order, with nothing decoded or cropped.

Passes alternate between the sides and the median pass counts.

    .venv/bin/python benchmarks/loader.py [--case 28|224] [--workers 2] [--threads 1] [--batches 60] [--repeats 3]
    .venv/bin/python benchmarks/loader.py --case 224 --threads 2 --device cuda   # the GPU version, when lent one
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from kdpipe.data.loader import InMemoryLoader
from kdpipe.data.prepared import channel_stats
from kdpipe.data.sources import load_source

PADDING = 2


def images_per_s(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], limit: int | None) -> float:
    """Time ``limit`` batches (None: all) from a fresh iterator; every batch is a materialised float tensor."""
    seen = 0
    start = time.perf_counter()
    for i, (x, _y) in enumerate(batches):
        seen += x.shape[0]
        if i + 1 == limit:
            break
    return seen / (time.perf_counter() - start)


def compare(sides: dict[str, Any], batches: int | None, repeats: int) -> dict[str, float]:
    """Median images/s of each side over ``repeats`` alternating passes, after one warm-up pass each."""
    runs: dict[str, list[float]] = {name: [] for name in sides}
    for side in sides.values():
        images_per_s(side(0), batches)
    for epoch in range(repeats):
        for name, side in sides.items():
            runs[name].append(images_per_s(side(epoch + 1), batches))
    return {name: statistics.median(r) for name, r in runs.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("28", "224"), default="28", help="the image size (default: 28)")
    parser.add_argument("--root", default="data/raw", help="raw data directory (Fashion-MNIST is staged there)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 256 at 28 px, 128 at 224")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in this process (default: 1)")
    parser.add_argument(
        "--batches", type=int, default=60, help="batches per timed pass (default: 60; 224: a whole epoch)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per side (default: 3)")
    parser.add_argument("--frames", type=int, default=4000, help="224: the line-camera frames (default: 4000)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kdpipe-loader-224"), help="224: frames and store")
    parser.add_argument("--device", default="cpu", help="224: where kdpipe views and both sides' batches land")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.case == "224":
        case_224(args)
        return
    args.batch_size = args.batch_size or 256

    raw = load_source("fashion_mnist", args.root)
    mean, std = channel_stats(raw.train_x)
    ours = InMemoryLoader(raw.train_x, raw.train_y, args.batch_size, mean, std, train=True, crop_padding=PADDING,
                          hflip=True, seed=0)  # fmt: skip
    per_image = transforms.Compose([
        transforms.RandomCrop(28, padding=PADDING),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])  # fmt: skip
    dataset = datasets.FashionMNIST(str(Path(args.root)), train=True, download=False, transform=per_image)
    baseline = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                          persistent_workers=args.workers > 0)  # fmt: skip

    print(f"torch {torch.__version__}; torch threads in this process: {torch.get_num_threads()}; "
          f"DataLoader workers: {args.workers} (1 torch thread each, torch's default in workers)")  # fmt: skip
    print(f"data: Fashion-MNIST train, {len(dataset)} images 1x28x28, batch {args.batch_size}, "
          f"{args.batches} batches per pass, {args.repeats} passes per side after one warm-up pass each, "
          "alternating")  # fmt: skip
    found = compare({"ours": lambda e: _at_epoch(ours, e), "base": lambda e: baseline}, args.batches, args.repeats)
    print(f"kdpipe InMemoryLoader: images_per_s={found['ours']:.0f}")
    print(f"torchvision Dataset+DataLoader ({args.workers} workers): images_per_s={found['base']:.0f}")
    print(f"ratio={found['ours'] / found['base']:.1f}x")


def _at_epoch(loader: Any, epoch: int) -> Any:
    loader.set_epoch(epoch)
    return loader


def _store(args: argparse.Namespace) -> tuple[Path, Path]:
    """The line-camera frames and their prepared store under ``--work``, made on the first run."""
    from kdpipe import steps
    from kdpipe.config import params_from_dict

    frames, prepared = args.work / "frames", args.work / "prepared"
    if not frames.exists():
        script = Path(__file__).resolve().parents[1] / "scripts" / "line_camera_set.py"
        made = [sys.executable, str(script), "--out", str(frames), "--count", str(args.frames), "--root", args.root]
        subprocess.run(made, check=True)
    if not (prepared / "manifest.json").exists():
        data = {"source": "imagefolder", "root": str(frames), "image_size": 224, "resize": "shorter_side"}
        steps.prepare_data(
            params_from_dict(
                {
                    "data": {**data, "store": "disk", "val_fraction": 0.02, "test_fraction": 0.02},
                    "tracking": {"enabled": False},
                    "paths": {"prepared": str(prepared)},
                    "runtime": {"progress": "off"},
                }
            )
        )
    return frames, prepared


def case_224(args: argparse.Namespace) -> None:
    from kdpipe.data.prepared import load_prepared
    from kdpipe.data.store import STORE_DIR
    from kdpipe.data.streaming import StreamingLoader

    batch, device = args.batch_size or 128, torch.device(args.device)
    frames, prepared = _store(args)
    data = load_prepared(prepared, verify=False)
    images, labels = data.split("train")
    mean, std = data.manifest["mean"], data.manifest["std"]
    ours = StreamingLoader(images, labels, batch, mean, std, image_size=224, train=True, hflip=True, seed=0,
                           device=device)  # fmt: skip
    per_image = transforms.Compose([
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])  # fmt: skip
    dataset = datasets.ImageFolder(str(frames), transform=per_image)
    baseline = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=args.workers,
                          persistent_workers=args.workers > 0, pin_memory=device.type == "cuda")  # fmt: skip
    maps = [np.memmap(prepared / STORE_DIR / s.file, dtype=np.uint8, mode="r").reshape(-1, *images.image_shape)
            for s in images.shards]  # fmt: skip

    def floor(epoch: int) -> Iterator[tuple[torch.Tensor, None]]:
        order = images.positions[np.random.default_rng(epoch).permutation(len(images))]
        shard = np.searchsorted(images.starts, order, side="right") - 1
        for k in range(0, len(order), batch):
            parts = [maps[s][order[k : k + batch][shard[k : k + batch] == s] - images.starts[s]]
                     for s in np.unique(shard[k : k + batch])]  # fmt: skip
            yield torch.from_numpy(np.concatenate(parts)).to(device), None

    print(f"torch {torch.__version__}; device {device}; torch threads in this process: {torch.get_num_threads()}; "
          f"DataLoader workers: {args.workers} (1 torch thread each)")  # fmt: skip
    print(f"data: {len(dataset)} line-camera frames 3x240x320 JPEG ({frames}); the store at 3x256x256; views "
          f"3x224x224; batch {batch}, a whole epoch per pass, {args.repeats} passes per side "
          "after one warm-up pass each, alternating")  # fmt: skip
    found = compare(
        {
            "ours": lambda e: _at_epoch(ours, e),
            "base": lambda e: ((x.to(device, non_blocking=True), y) for x, y in baseline),
            "floor": floor,
        },
        None,  # whole epochs: a pass cut short leaves the DataLoader's workers busy in the next side's pass
        args.repeats,
    )
    print(f"kdpipe StreamingLoader (random resized crop + flip on {device}): images_per_s={found['ours']:.0f}")
    print(f"torchvision ImageFolder+DataLoader ({args.workers} workers): images_per_s={found['base']:.0f}")
    print(f"floor, warm np.memmap of the same bytes, nothing decoded: images_per_s={found['floor']:.0f}")
    ours_ips = found["ours"]
    print(f"ratio to the DataLoader={ours_ips / found['base']:.1f}x; to the floor={ours_ips / found['floor']:.2f}")


if __name__ == "__main__":
    main()
