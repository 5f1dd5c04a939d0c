"""The teacher-output cache on disk: one directory per key, one file per epoch and rank, and the budget that bounds
them all (``cache.max_gb``), kept by evicting whole keys, least recently written first."""

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
from kdpipe.infra.files import FILE_OVERHEAD

log = logging.getLogger("kdpipe")

KEY_FILE = "key.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def epoch_bytes(samples: int, feature_dim: int, num_classes: int, dtype: str) -> int:
    """One epoch's file: pooled features and logits of every view, at ``dtype``."""
    return samples * (feature_dim + num_classes) * DTYPES[dtype].itemsize + FILE_OVERHEAD


class TeacherCache:
    """One key's directory: an epoch-and-rank file per finished epoch, and the key beside them."""

    def __init__(self, root: Path, key: dict[str, Any], rank: int = 0) -> None:
        self.key, self.rank = key, rank
        self.directory = root / identity.cache_directory(key)

    def path(self, epoch: int) -> Path:
        return self.directory / f"epoch{epoch:04d}-rank{self.rank}.pt"

    def has(self, epoch: int) -> bool:
        return self.path(epoch).exists()

    def complete(self) -> bool:
        return all(self.has(e) for e in range(self.key["epochs"]))

    def load(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(features, logits, labels) of the epoch's views; None when the file went away (evicted meanwhile)."""
        try:
            blob = files.load_tensors(self.path(epoch))
        except FileNotFoundError:
            return None
        return blob["features"], blob["logits"], blob["labels"]

    def save(self, epoch: int, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.directory / KEY_FILE).exists():
            files.atomic_write_text(self.directory / KEY_FILE, json.dumps(self.key, indent=2) + "\n")
        dtype = DTYPES[self.key["dtype"]]
        files.atomic_torch_save(
            {"features": features.to(dtype), "logits": logits.to(dtype), "labels": labels}, self.path(epoch)
        )


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
