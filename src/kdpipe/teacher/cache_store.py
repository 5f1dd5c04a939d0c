"""The teacher-output cache on disk: one directory per key, each epoch and rank in parts of :data:`PART_VIEWS` views
with an index written last, and the budget that bounds them all (``cache.max_gb``), kept by evicting whole keys,
least recently written first.

Recording and replaying hold one part in memory, never an epoch: at ImageNet's figures (2,048 features and 1,000
logits in float32) a part is 100 MB where an epoch of 1.28 M views is 15.6 GB. An epoch counts as cached only once
its index exists, so an interrupted recording is recorded again, never replayed short.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from kdpipe import identity
from kdpipe.infra import files
from kdpipe.infra.errors import ForeignFileError, KdpipeError
from kdpipe.infra.files import FILE_OVERHEAD

log = logging.getLogger("kdpipe")

KEY_FILE = "key.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16}
PART_VIEWS = 8192
PART_KEYS = ("features", "logits", "labels")


def epoch_bytes(samples: int, feature_dim: int, num_classes: int, dtype: str) -> int:
    """One epoch's files: pooled features and logits of every view, at ``dtype``."""
    parts = max(1, -(-samples // PART_VIEWS))  # and an index of a few bytes
    return samples * (feature_dim + num_classes) * DTYPES[dtype].itemsize + FILE_OVERHEAD * parts


class EpochWriter:
    """Takes an epoch's rows batch by batch; writes a part each :data:`PART_VIEWS` rows and the index at the end."""

    def __init__(self, cache: TeacherCache, epoch: int) -> None:
        self.cache, self.epoch = cache, epoch
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.sizes: list[int] = []

    def add(self, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.pending.append((features, logits, labels))
        while sum(len(p[2]) for p in self.pending) >= PART_VIEWS:
            self._flush(PART_VIEWS)

    def _flush(self, n: int) -> None:
        rows = [torch.cat([p[i] for p in self.pending]) for i in range(3)]
        dtype = DTYPES[self.cache.key["dtype"]]
        part = {k: t[:n].to(dtype if k != "labels" else t.dtype).clone() for k, t in zip(PART_KEYS, rows, strict=True)}
        # clone: a slice saved as it is would carry its whole buffer (torch.save writes the storage)
        files.atomic_torch_save(part, self.cache.part(self.epoch, len(self.sizes)))
        self.sizes.append(n)
        self.pending = [(rows[0][n:], rows[1][n:], rows[2][n:])] if len(rows[2]) > n else []

    def close(self) -> None:
        rest = sum(len(p[2]) for p in self.pending)
        if rest:
            self._flush(rest)
        files.atomic_write_text(self.cache.path(self.epoch), json.dumps({"parts": self.sizes}) + "\n")


class EpochReader:
    """An epoch's rows in order, ``take(n)`` at a time, one part loaded at once."""

    def __init__(self, cache: TeacherCache, epoch: int, sizes: list[int]) -> None:
        self.cache, self.epoch, self.sizes = cache, epoch, sizes
        self.total, self.offset = sum(sizes), 0
        self._part, self._rows, self._at = -1, None, 0

    def take(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The next ``n`` rows (fewer when the epoch ends first); None when a part went away (evicted meanwhile)."""
        out: list[tuple[torch.Tensor, ...]] = []
        while n > 0 and self.offset < self.total:
            if self._rows is None or self._at == len(self._rows[2]):
                self._part += 1
                path = self.cache.part(self.epoch, self._part)
                try:
                    blob = files.load_tensors(path)
                except ForeignFileError:
                    if not path.exists():  # evicted meanwhile by another run's recording
                        return None
                    raise
                if len(blob["labels"]) != self.sizes[self._part]:
                    raise KdpipeError(
                        f"{path}: holds {len(blob['labels'])} views, but {self.cache.path(self.epoch).name} says "
                        f"{self.sizes[self._part]}; delete {self.cache.directory} to record it again"
                    )
                self._rows, self._at = (blob["features"], blob["logits"], blob["labels"]), 0
            k = min(n, len(self._rows[2]) - self._at)
            out.append(tuple(t[self._at : self._at + k] for t in self._rows))
            self._at, self.offset, n = self._at + k, self.offset + k, n - k
        if not out:
            return torch.empty(0), torch.empty(0), torch.empty(0, dtype=torch.long)
        return tuple(torch.cat([o[i] for o in out]) for i in range(3))  # type: ignore[return-value]


class TeacherCache:
    """One key's directory: an epoch-and-rank file per finished epoch, and the key beside them."""

    def __init__(self, root: Path, key: dict[str, Any], rank: int = 0) -> None:
        self.key, self.rank = key, rank
        self.directory = root / identity.cache_directory(key)

    def path(self, epoch: int) -> Path:
        """The epoch's index: written last, so its presence means every part is there."""
        return self.directory / f"epoch{epoch:04d}-rank{self.rank}.json"

    def part(self, epoch: int, k: int) -> Path:
        return self.directory / f"epoch{epoch:04d}-rank{self.rank}-part{k:05d}.pt"

    def has(self, epoch: int) -> bool:
        return self.path(epoch).exists()

    def complete(self) -> bool:
        return all(self.has(e) for e in range(self.key["epochs"]))

    def reader(self, epoch: int) -> EpochReader | None:
        """The epoch's rows in order; None when its index went away (evicted meanwhile)."""
        try:
            sizes = json.loads(self.path(epoch).read_text())["parts"]
        except FileNotFoundError:
            return None
        return EpochReader(self, epoch, [int(n) for n in sizes])

    def writer(self, epoch: int) -> EpochWriter:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.directory / KEY_FILE).exists():
            files.atomic_write_text(self.directory / KEY_FILE, json.dumps(self.key, indent=2) + "\n")
        return EpochWriter(self, epoch)


def directory_size(directory: Path) -> int:
    """Bytes under a key directory; a file removed meanwhile (another run evicting) counts as gone."""
    total = 0
    for f in directory.glob("*"):
        with contextlib.suppress(FileNotFoundError):
            total += f.stat().st_size
    return total


def make_room(root: Path, needed: int, budget_gb: float, keep: Path) -> bool:
    """Evict whole key directories, least recently written first (never ``keep``), until ``needed`` more bytes
    fit in ``cache.max_gb``; False, having evicted nothing, when they cannot fit beside ``keep`` alone."""
    budget = budget_gb * 1e9
    if needed == 0:
        return True
    if directory_size(keep) + needed > budget:
        return False
    dirs = (
        sorted((d for d in root.iterdir() if d.is_dir() and d != keep), key=lambda d: d.stat().st_mtime)
        if root.exists()
        else []
    )
    sizes = {d: directory_size(d) for d in [*dirs, keep]}
    while sum(sizes.values()) + needed > budget and dirs:
        oldest = dirs.pop(0)
        log.info(
            "teacher cache: evicting %s (%.1f MB, least recently written) for cache.max_gb %g",
            oldest,
            sizes.pop(oldest) / 1e6,
            budget_gb,
        )
        shutil.rmtree(oldest, ignore_errors=True)
    return sum(sizes.values()) + needed <= budget
