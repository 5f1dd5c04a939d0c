"""The prepared store for sets too large to hold in memory: fixed-shape uint8 shards on disk, read by offset.

Each split is a run of shards, ``store/<split>-00000.u8`` and on, each at most :data:`SHARD_IMAGES` images of
``[C, S, S]`` uint8 in C order, and ``store/<split>-labels.npy``. The manifest's ``store`` section lists every
shard's file, image count and sha256, each computed as the shard is written; the data set's sha256 hashes those
lists, so naming the data never reads it again, and verification reads each shard once, in chunks, naming the
first that differs.

Raw pixels rather than JPEG: a read is a ``pread`` at memory speed with nothing to decode, and replaying the
teacher's outputs needs exactly the pixels the teacher saw. The price is disk: 192 KiB an image at 256 px RGB
(``docs/data.md`` gives it at 10 k, 100 k and 1 M images).

A read copies the asked images into a fresh tensor: memory is what a batch needs, never the split (page cache
is the kernel's, and it is not counted in the process's resident set).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdpipe.data.progress import progress
from kdpipe.infra.errors import DataError
from kdpipe.infra.files import file_sha256

STORE_DIR = "store"
FORMAT = "uint8-shards-v1"
SHARD_IMAGES = 1024  # 192 MiB at 256 px RGB: big enough for long sequential reads, small enough to add often
HASH_CHUNK = 16 << 20
OPEN_SHARDS = 32  # per view of a split; a batch of 256 random images from a million touches at most 256 shards


@dataclass(frozen=True)
class Shard:
    file: str
    images: int
    sha256: str


@dataclass(frozen=True)
class SplitRecord:
    """One split in the store: its shards in order, and its labels file with that file's sha256."""

    shards: tuple[Shard, ...]
    labels: str
    labels_sha256: str

    @property
    def images(self) -> int:
        return sum(s.images for s in self.shards)

    def as_dict(self) -> dict[str, Any]:
        return {"shards": [asdict(s) for s in self.shards], "labels": self.labels, "labels_sha256": self.labels_sha256}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitRecord:
        return cls(tuple(Shard(**s) for s in d["shards"]), d["labels"], d["labels_sha256"])


@dataclass(frozen=True)
class StoreContent:
    """What the manifest needs from a written store."""

    records: dict[str, SplitRecord]
    shape: tuple[int, int, int]
    mean: list[float]
    std: list[float]
    sums: list[list[float]]
    """Per channel, the training split's sum and sum of squares of pixel values in [0, 1] over ``pixels``: what a
    later night extending the store adds to, exactly."""
    pixels: int


class ShardWriter:
    """Appends one split's images to numbered shards in ``directory``, hashing each shard as it is written."""

    def __init__(
        self,
        directory: Path,
        split: str,
        shape: tuple[int, int, int],
        shard_images: int = SHARD_IMAGES,
        carried: Sequence[Shard] = (),
        labels: Sequence[int] = (),
    ) -> None:
        """``carried``: shards already in ``directory`` (yesterday's), kept as they are, with their ``labels``;
        new images go to new shards after them."""
        self.directory, self.split, self.shape, self.shard_images = directory, split, tuple(shape), shard_images
        self.shards: list[Shard] = list(carried)
        self.labels: list[int] = list(labels)
        self._fh: Any = None
        self._digest = hashlib.sha256()
        self._in_shard = 0

    def _roll(self) -> None:
        if self._fh is not None:
            self._fh.close()
            name = self.shards_file(len(self.shards))
            self.shards.append(Shard(name, self._in_shard, self._digest.hexdigest()))
        self._fh, self._digest, self._in_shard = None, hashlib.sha256(), 0

    def shards_file(self, k: int) -> str:
        return f"{self.split}-{k:05d}.u8"

    def append(self, images: np.ndarray, labels: Sequence[int]) -> None:
        """Images ``[k, C, S, S]`` uint8 and their labels, in order."""
        if images.dtype != np.uint8 or tuple(images.shape[1:]) != self.shape:
            raise ValueError(f"expected uint8 images of shape {self.shape}, got {images.dtype} {images.shape[1:]}")
        start = 0
        while start < len(images):
            if self._fh is None:
                self._fh = open(self.directory / self.shards_file(len(self.shards)), "xb")  # noqa: SIM115 (never over a kept shard)
            take = min(self.shard_images - self._in_shard, len(images) - start)
            chunk = np.ascontiguousarray(images[start : start + take])
            self._fh.write(chunk.data)
            self._digest.update(chunk.data)
            self._in_shard += take
            start += take
            if self._in_shard == self.shard_images:
                self._roll()
        self.labels.extend(int(v) for v in labels)

    def close(self) -> SplitRecord:
        """Finish the last shard and write the labels; the split's record for the manifest."""
        if self._fh is not None:
            self._roll()
        name = f"{self.split}-labels.npy"
        np.save(self.directory / name, np.asarray(self.labels, dtype=np.int64))
        return SplitRecord(tuple(self.shards), name, file_sha256(self.directory / name))


def store_sha256(
    shape: Sequence[int], splits: dict[str, SplitRecord], classes: list[str], picks: dict[str, int | None]
) -> str:
    """The data set's sha256: of each shard's file, image count and hash in order, the labels' hash, the shape, the
    classes and the subset picks (``data.train_subset``/``test_subset`` and their seed), so it names exactly the
    images a step reads, where it reads them."""
    named = {
        split: [[s.file, s.images, s.sha256] for s in r.shards] + [r.labels_sha256]
        for split, r in sorted(splits.items())
    }
    body = json.dumps({"format": FORMAT, "shape": list(shape), "splits": named, "picks": picks}, sort_keys=True)
    return hashlib.sha256(body.encode() + json.dumps(classes).encode()).hexdigest()


def verify(directory: Path, splits: dict[str, SplitRecord], progress_mode: str = "auto") -> None:
    """Re-hash every shard and labels file, streaming; a difference is a DataError naming the file."""
    files = [(s.file, s.sha256) for r in splits.values() for s in r.shards]
    files += [(r.labels, r.labels_sha256) for r in splits.values()]
    total = sum((directory / f).stat().st_size for f, _ in files if (directory / f).exists())
    with progress("sha256 of the prepared store", total, unit="B", mode=progress_mode) as bar:
        for name, expected in files:
            path = directory / name
            if not path.exists():
                raise DataError(f"{path}: missing from the prepared store; run `kdpipe prepare` again")
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                while chunk := fh.read(HASH_CHUNK):
                    digest.update(chunk)
                    bar.advance(len(chunk))
            if digest.hexdigest() != expected:
                raise DataError(f"{path}: content does not match its sha256 in the manifest; prepare the data again")


class StoredImages:
    """A split's images on disk, indexed like a tensor's first dimension but read only when asked.

    ``subset`` makes a view (no read); ``read`` returns a uint8 tensor of the asked images. Each view keeps at most
    :data:`OPEN_SHARDS` shard files open (the least recently read closed first), opened per process on first
    read, so a million-image split stays within the descriptor limit and a loader can be pickled to a worker.
    Reads of one view are serialised (the read-ahead thread and the caller may share it).
    """

    def __init__(
        self,
        directory: Path,
        shards: Sequence[Shard],
        shape: Sequence[int],
        positions: np.ndarray | None = None,
    ) -> None:
        self.directory, self.shards, self.image_shape = Path(directory), tuple(shards), tuple(int(v) for v in shape)
        self.starts = np.cumsum([0] + [s.images for s in self.shards])
        total = int(self.starts[-1])
        self.positions = np.arange(total, dtype=np.int64) if positions is None else np.asarray(positions, np.int64)
        self.stride = int(np.prod(self.image_shape))
        self._open()

    def _open(self) -> None:
        self._fds: OrderedDict[int, int] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.image_shape)

    def subset(self, index: torch.Tensor | np.ndarray) -> StoredImages:
        idx = index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        return StoredImages(self.directory, self.shards, self.image_shape, self.positions[idx])

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # a forked copy: its parent's descriptors are not its own to reuse
            self._fds, self._pid = OrderedDict(), os.getpid()
        if shard in self._fds:
            self._fds.move_to_end(shard)
            return self._fds[shard]
        if len(self._fds) >= OPEN_SHARDS:
            os.close(self._fds.popitem(last=False)[1])
        self._fds[shard] = os.open(self.directory / self.shards[shard].file, os.O_RDONLY)
        return self._fds[shard]

    def read(self, index: torch.Tensor | np.ndarray | Sequence[int], out: torch.Tensor | None = None) -> torch.Tensor:
        """The images at ``index`` (positions in this view), as ``[k, C, S, S]`` uint8, in that order; into ``out``
        (contiguous, that shape) when given."""
        idx = index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index, dtype=np.int64)
        where = self.positions[idx]
        if out is None:
            out = torch.empty((len(where), *self.image_shape), dtype=torch.uint8)
        elif out.shape != (len(where), *self.image_shape) or out.dtype != torch.uint8 or not out.is_contiguous():
            raise ValueError(f"read: out must be contiguous uint8 {[len(where), *self.image_shape]}, not {out.shape}")
        flat = out.numpy().reshape(len(where), -1)
        shard = np.searchsorted(self.starts, where, side="right") - 1
        local = where - self.starts[shard]
        k = 0
        with self._lock:
            while k < len(where):  # one read for each run of neighbours in one shard
                end = k + 1
                while end < len(where) and shard[end] == shard[k] and local[end] == local[end - 1] + 1:
                    end += 1
                view = memoryview(flat[k:end]).cast("B")
                got = os.preadv(self._fd(int(shard[k])), [view], int(local[k]) * self.stride)
                if got != len(view):
                    raise DataError(f"{self.directory / self.shards[shard[k]].file}: shorter than its manifest says")
                k = end
        return out

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_fds", "_lock", "_pid")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            self.close()
