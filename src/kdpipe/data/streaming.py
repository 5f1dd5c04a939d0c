"""The streaming loader: batches of a split in the prepared store, read ahead on a thread, viewed on the device.

It is :class:`kdpipe.data.loader.InMemoryLoader`'s twin for sets that do not fit in memory: the same epoch order
(:func:`kdpipe.data.loader.epoch_order`, so DDP ranks take the same shares), the same batch count and
normalisation; what differs is where the uint8 pixels come from (a ``pread`` per run of neighbouring images) and
the views (:mod:`kdpipe.data.views`: a random resized crop and flip for training, the central crop for
evaluation). A reader thread keeps ``prefetch`` batches ready: ``pread`` releases the GIL, so reading overlaps
the training step. Memory is those batches, never the split.

On a GPU the views are cut from the whole batch on the device. On the CPU each image is cropped, resized and
normalised in one go on a pool thread, while it is in that core's cache, into batch memory that is reused
(:mod:`kdpipe.data.batch_buffers`); the values are the same as the whole-batch path's, to the bit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from kdpipe.data.batch_buffers import BatchBuffers
from kdpipe.data.loader import EpochBatches, InMemoryLoader
from kdpipe.data.store import StoredImages
from kdpipe.data.views import Views, center_crops, resized_crop, resized_crops, train_views

PREFETCH = 3
_DONE = object()


def one_openmp_thread() -> None:
    """Gives the calling view thread one OpenMP thread (it is its own setting: the other threads keep theirs).

    The views run one image per thread on as many threads as torch has; left alone, each of those threads would
    also open a team of that many OpenMP threads for its resize and normalisation: on 2 cores the view step ran
    1.1-1.6x as fast with one OpenMP thread each (``benchmarks/views.py``). torch sets a new thread's OpenMP
    count the first time the thread calls into it, so that call comes first."""
    torch.get_num_threads()
    threadpool_limits(1, user_api="openmp")


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

    def _read(self, batch: torch.Tensor, buffers: BatchBuffers | None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        pixels = self.images.read(batch, buffers.take(len(batch)) if buffers else None)
        if self.device.type == "cuda":
            pixels = pixels.pin_memory()
        return pixels, self.labels[batch], self.images.positions[batch.numpy()]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self._indices()
        batches = [idx[k * self.batch_size : (k + 1) * self.batch_size] for k in range(len(self))]
        cpu = self.device.type == "cpu"
        # On the CPU, this epoch's batch memory. Reads: those queued, the one being read, the one being viewed;
        # views: the one handed out and the next.
        read_into = (
            BatchBuffers(self.batch_size, self.images.image_shape, self.prefetch + 2, torch.uint8) if cpu else None
        )
        reads = read_ahead(lambda k: self._read(batches[k], read_into), len(batches), self.prefetch)
        if not cpu:
            for pixels, labels, positions in reads:
                x = self._view(pixels.to(self.device, non_blocking=True), positions)
                yield x, labels.to(self.device, non_blocking=True)
            return
        view_shape = (self.images.image_shape[0], self.image_size, self.image_size)
        view_into = BatchBuffers(self.batch_size, view_shape, 2, channels_last=self.channels_last)
        with ThreadPoolExecutor(torch.get_num_threads(), "kdpipe-views", initializer=one_openmp_thread) as pool:
            for pixels, labels, positions in reads:
                out = view_into.take(len(pixels))
                if self.train:
                    one = partial(self._view_into, self._views(pixels, positions))
                    list(pool.map(one, range(len(out)), pixels, out.split(1)))
                else:
                    self.normalize_into(center_crops(pixels, self.image_size), out)
                yield out, labels

    def _views(self, pixels: torch.Tensor, positions: np.ndarray) -> Views:
        return train_views(self.seed, self.epoch, positions, pixels.shape[-2], pixels.shape[-1], self.hflip)

    def _view(self, pixels: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
        """The whole batch's views on the device, normalised."""
        if self.train:
            return self.normalize(resized_crops(pixels, self._views(pixels, positions), self.image_size))
        return self.normalize(center_crops(pixels, self.image_size))

    def _view_into(self, views: Views, k: int, image: torch.Tensor, out: torch.Tensor) -> None:
        """View ``k``, normalised into ``out``, on a pool thread: torch's uint8 resize releases the GIL, and one
        image's crop, conversion and normalisation stay in that core's cache."""
        self.normalize_into(resized_crop(image, views, k, self.image_size), out)


Loader = InMemoryLoader | StreamingLoader
"""Batches of ``(float images, labels)`` for a step: its split in memory or streamed from the store."""
