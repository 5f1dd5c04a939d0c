"""Images/s of kdpipe's data path against torchvision's Dataset + DataLoader, in one process.

Both read the same Fashion-MNIST training images and apply the same augmentation (random crop with
2 pixels of zero padding, horizontal flip, normalisation). kdpipe keeps uint8 tensors in memory and
augments whole batches (:class:`kdpipe.data.loader.InMemoryLoader`); the baseline is the usual
per-image pipeline: ``torchvision.datasets.FashionMNIST`` with ``RandomCrop(28, padding=2)``,
``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` and a ``DataLoader`` with worker processes.
Passes alternate between the two and the median pass counts.

    .venv/bin/python benchmarks/loader.py [--workers 2] [--threads 1] [--batches 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from kdpipe.data.loader import InMemoryLoader
from kdpipe.data.prepared import channel_stats
from kdpipe.data.sources import load_source

PADDING = 2


def images_per_s(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], limit: int) -> float:
    """Time ``limit`` batches from a fresh iterator; every batch is a materialised float tensor."""
    seen = 0
    start = time.perf_counter()
    for i, (x, _y) in enumerate(batches):
        seen += x.shape[0]
        if i + 1 == limit:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/raw", help="raw data directory (Fashion-MNIST is staged there)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in this process (default: 1)")
    parser.add_argument("--batches", type=int, default=60, help="batches per timed pass (default: 60)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per side (default: 3)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

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
    images_per_s(ours, args.batches)
    images_per_s(baseline, args.batches)
    ours_runs, base_runs = [], []
    for epoch in range(args.repeats):
        ours.set_epoch(epoch)
        ours_runs.append(images_per_s(ours, args.batches))
        base_runs.append(images_per_s(baseline, args.batches))
    ours_ips, base_ips = statistics.median(ours_runs), statistics.median(base_runs)
    print(f"kdpipe InMemoryLoader: images_per_s={ours_ips:.0f}")
    print(f"torchvision Dataset+DataLoader ({args.workers} workers): images_per_s={base_ips:.0f}")
    print(f"ratio={ours_ips / base_ips:.1f}x")


if __name__ == "__main__":
    main()
