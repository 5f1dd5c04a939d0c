"""What each choice in the streaming loader's CPU view step is worth, as ratios in one process.

One batch of stored 224-px training images (``benchmarks/loader.py --case 224`` prepares the store), each image's
random resized crop and flip computed and normalised on a pool of ``--threads`` threads, one choice changed at
a time against the loader's own step:

- resize: torchvision's ``resized_crop`` on the channels-first image against :func:`kdpipe.data.views.resized_crop`
  (a channels-last copy of the box to torch's uint8 kernel; the same pixels, checked here too);
- memory: a new float batch each time against a reused one (:mod:`kdpipe.data.batch_buffers`);
- OpenMP: view threads that open their own OpenMP teams against one OpenMP thread each
  (:func:`kdpipe.data.streaming.one_openmp_thread`).

Rounds alternate between the two sides of each pair; the median round counts.

    .venv/bin/python benchmarks/views.py [--prepared /tmp/kdpipe-loader-224/prepared] [--threads 2] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from kdpipe.data.prepared import load_prepared
from kdpipe.data.streaming import StreamingLoader, one_openmp_thread
from kdpipe.data.views import Views, resized_crop, train_views

BATCH = 128


def torchvision_crop(image: torch.Tensor, views: Views, k: int, size: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as tvf

    out = tvf.resized_crop(image, *(int(v) for v in views.boxes[k]), [size, size], antialias=True)
    return out.flip(-1) if views.flips[k] else out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, default=Path("/tmp/kdpipe-loader-224/prepared"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads and view threads (default: 2)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per side (default: 15)")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)

    data = load_prepared(args.prepared, verify=False)
    images, labels = data.split("train")
    loader = StreamingLoader(images, labels, BATCH, data.manifest["mean"], data.manifest["std"], image_size=224)
    pixels = images.read(np.arange(BATCH))
    views = train_views(0, 1, images.positions[:BATCH], *pixels.shape[-2:], hflip=True)
    kept = torch.empty(BATCH, 3, 224, 224)

    def step(crop: Callable[..., torch.Tensor], fresh: bool) -> Callable[[ThreadPoolExecutor], None]:
        def run(pool: ThreadPoolExecutor) -> None:
            out = torch.empty(BATCH, 3, 224, 224) if fresh else kept
            todo = [(k, out[k : k + 1]) for k in range(BATCH)]
            list(pool.map(lambda job: loader.normalize_into(crop(pixels[job[0]], views, job[0], 224), job[1]), todo))

        return run

    same = all(torch.equal(resized_crop(pixels[k], views, k, 224), torchvision_crop(pixels[k], views, k, 224))
               for k in range(BATCH))  # fmt: skip
    limited = ThreadPoolExecutor(args.threads, initializer=one_openmp_thread)
    nested = ThreadPoolExecutor(args.threads)
    ours = (step(resized_crop, fresh=False), limited)
    pairs = {
        "resize: torchvision's resized_crop": (step(torchvision_crop, fresh=False), limited),
        "memory: a new float batch each time": (step(resized_crop, fresh=True), limited),
        "OpenMP: a team in each view thread": (ours[0], nested),
    }
    print(f"torch {torch.__version__}; torch threads and view threads: {args.threads}; batch {BATCH} of "
          f"{tuple(pixels.shape[1:])} stored images to 3x224x224; {args.rounds} rounds each side, median")  # fmt: skip
    print(f"kdpipe's resized_crop gives torchvision's pixels: {same}")
    for name, (run, pool) in pairs.items():
        times: dict[str, list[float]] = {"ours": [], "other": []}
        for f, p in (ours, (run, pool)):
            f(p)  # warm-up
        for _ in range(args.rounds):
            for side, (f, p) in (("ours", ours), ("other", (run, pool))):
                start = time.perf_counter()
                f(p)
                times[side].append(time.perf_counter() - start)
        o, b = (BATCH / statistics.median(times[s]) for s in ("ours", "other"))
        print(f"{name}: {b:.0f} images/s against the loader's step {o:.0f}; ratio={o / b:.2f}x")
    limited.shutdown()
    nested.shutdown()


if __name__ == "__main__":
    main()
