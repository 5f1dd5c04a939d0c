"""Writing a team's decoded images into the prepared store (:mod:`kdpipe.data.store`) as they arrive.

Images come one at a time from :func:`kdpipe.data.decoding.decoded`; each is converted to the store's channels
and buffered per split, and every :data:`FLUSH` images of a split go to its shard writer. The training split's
per-channel mean and standard deviation are summed as they pass. Memory is the buffers, never the set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kdpipe.data.store import ShardWriter, SplitRecord, StoreContent
from kdpipe.infra.errors import DataError
from kdpipe.infra.files import link_or_copy

FLUSH = 64


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grey to RGB by repetition, RGB to grey by ITU-R 601 luma (as torchvision's ``rgb_to_grayscale``)."""
    if image.shape[0] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=0)
    from torchvision.transforms.v2 import functional as tvf

    return tvf.rgb_to_grayscale(torch.from_numpy(image)).numpy()


class StoreSink:
    """Receives ``(split, image, label)`` in the listing's order and writes the store under ``directory``."""

    def __init__(self, directory: Path, channels: int, splits: tuple[str, ...]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory, self.channels, self.splits = directory, channels, splits
        self.shape: tuple[int, int, int] | None = None
        self.first = ""
        self.writers: dict[str, ShardWriter] = {}
        self.buffers: dict[str, tuple[list[np.ndarray], list[int]]] = {s: ([], []) for s in splits}
        self.sums = np.zeros((2, channels))
        self.pixels = 0

    def carry(self, old: Path, records: dict[str, SplitRecord], labels: dict[str, list[int]], manifest: dict) -> None:
        """Start from yesterday's store in ``old``: its shards hard-linked here (nothing is copied), its labels and
        training statistics kept; today's images go to new shards after them."""
        self.shape, self.first = tuple(manifest["store"]["shape"]), f"{old} (yesterday's store)"
        for split in self.splits:
            for shard in records[split].shards:
                link_or_copy(old / shard.file, self.directory / shard.file)
        self.writers = {
            s: ShardWriter(self.directory, s, self.shape, carried=records[s].shards, labels=labels[s])
            for s in self.splits
        }
        stats = manifest["store"]["train_stats"]
        self.sums, self.pixels = np.asarray(stats["sums"], dtype=np.float64), int(stats["pixels"])

    def add(self, split: str, image: np.ndarray, label: int, name: str) -> None:
        image = to_channels(image, self.channels)
        if self.shape is None:
            self.shape, self.first = tuple(image.shape), name
            self.writers = {s: ShardWriter(self.directory, s, self.shape) for s in self.splits}
        elif tuple(image.shape) != self.shape:
            raise DataError(
                f"{name}: {image.shape[2]}x{image.shape[1]} pixels, but {self.first} has "
                f"{self.shape[2]}x{self.shape[1]}; set data.image_size and a data.resize other than none"
            )
        if split == "train":
            flat = image.reshape(self.channels, -1).astype(np.float64) / 255
            self.sums += np.stack([flat.sum(axis=1), (flat**2).sum(axis=1)])
            self.pixels += flat.shape[1]
        images, labels = self.buffers[split]
        images.append(image)
        labels.append(label)
        if len(images) >= FLUSH:
            self._flush(split)

    def _flush(self, split: str) -> None:
        images, labels = self.buffers[split]
        if images:
            self.writers[split].append(np.stack(images), labels)
        self.buffers[split] = ([], [])

    def close(self, empty_hint: str) -> StoreContent:
        """Finish every split; a split with no image is a DataError (``empty_hint`` says why that may be)."""
        for split in self.splits:
            if self.shape is not None:
                self._flush(split)
        records = {s: w.close() for s, w in self.writers.items()}
        counts = {s: records[s].images if s in records else 0 for s in self.splits}
        for split in self.splits:
            if counts[split] == 0:
                raise DataError(f"no image fell in the {split} split ({empty_hint})")
        n = self.pixels
        mean = self.sums[0] / n
        var = (self.sums[1] - n * mean**2) / max(n - 1, 1)
        std = np.sqrt(np.maximum(var, 0)).clip(min=1e-3)
        sums = self.sums.tolist()
        return StoreContent(records, self.shape or (0, 0, 0), mean.tolist(), std.tolist(), sums, self.pixels)
