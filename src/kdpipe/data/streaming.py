"""The streaming loader: batches of a split in the prepared store, read ahead on a thread, viewed on the device.

It is :class:`kdpipe.data.loader.InMemoryLoader`'s twin for sets that do not fit in memory: the same epoch order
(:func:`kdpipe.data.loader.epoch_order`, so DDP ranks take the same shares), the same batch count and
normalisation; what differs is where the uint8 pixels come from (a ``pread`` per run of neighbouring images) and
the views (:mod:`kdpipe.data.views`: a random resized crop and flip for training, the central crop for
evaluation). A reader thread keeps ``prefetch`` batches ready: ``pread`` releases the GIL, so reading overlaps
the training step. Memory is those batches, never the split.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from kdpipe.data.loader import EpochBatches, InMemoryLoader
from kdpipe.data.store import StoredImages
from kdpipe.data.views import center_crops, resized_crops, train_views

PREFETCH = 3
_DONE = object()


def read_ahead(make: Callable[[int], Any], count: int, depth: int) -> Iterator[Any]:
    """``make(0)``, ``make(1)``, ... ``make(count - 1)``, each computed on a thread up to ``depth`` ahead; an
    error in the thread is raised here, and leaving the loop early stops the thread."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for k in range(count):
                if not offer(make(k)):
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)

    thread = threading.Thread(target=work, name="kdpipe-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class StreamingLoader(EpochBatches):
    """Iterates ``(float images, labels)`` batches of ``image_size`` views over a stored split."""

    def __init__(
        self,
        images: StoredImages,
        labels: torch.Tensor,
        batch_size: int,
        mean: list[float],
        std: list[float],
        *,
        image_size: int,
        train: bool = False,
        hflip: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        prefetch: int = PREFETCH,
    ) -> None:
        super().__init__(
            labels, batch_size, mean, std, train=train, hflip=hflip, seed=seed, device=device,
            channels_last=channels_last, rank=rank, world_size=world_size, on_device=False,
        )  # fmt: skip
        self.images, self.image_size, self.prefetch = images, image_size, prefetch

    def _read(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        pixels = self.images.read(batch)
        if self.device.type == "cuda":
            pixels = pixels.pin_memory()
        return pixels, self.labels[batch], self.images.positions[batch.numpy()]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self._indices()
        batches = [idx[k * self.batch_size : (k + 1) * self.batch_size] for k in range(len(self))]
        epoch, cpu = self.epoch, self.device.type == "cpu"
        with ThreadPoolExecutor(torch.get_num_threads() if cpu else 1, thread_name_prefix="kdpipe-views") as pool:
            for pixels, labels, positions in read_ahead(lambda k: self._read(batches[k]), len(batches), self.prefetch):
                x = pixels.to(self.device, non_blocking=True)
                if self.train:
                    views = train_views(self.seed, epoch, positions, x.shape[-2], x.shape[-1], self.hflip)
                    x = resized_crops(x, views, self.image_size, pool if cpu else None)
                else:
                    x = center_crops(x, self.image_size)
                yield self.normalize(x), labels.to(self.device, non_blocking=True)


Loader = InMemoryLoader | StreamingLoader
"""Batches of ``(float images, labels)`` for a step: its split in memory or streamed from the store."""
