"""The teacher's outputs for exactly the views a student sees: computed once, replayed by every student.

The teacher's no-grad forward is most of a distillation step (``benchmarks/step.py``), yet every
nightly run, study cell and seed recomputes it on the same images. The training loader's views are
a pure function of (data, ``train.view_seed``, epoch, batch size, crop padding, flips, transfer-set
sample, rank), so the teacher's pooled features and logits for epoch ``e`` can be stored once and
read back batch by batch, in the order the loader yields them.

The cache lives under ``paths.teacher_cache``, one directory per key (the sha256 of the teacher
file, the data, every view parameter, the epoch count, world size, precision and dtype): any change
is a miss, never a wrong hit. Each epoch (and rank) is one file, written atomically, so an
interrupted fill keeps its finished epochs. ``method.<name>.cache``: ``auto`` replays the epochs
found and records the others while training live (filled lazily on first use), ``require`` fails
unless every epoch is there, ``off`` never touches it. ``kdpipe teacher-cache`` fills it ahead.
``cache.max_gb`` bounds the whole directory: recording evicts the least recently written keys first.

With ``cache.dtype: float32`` a replayed run is bit-identical to a live one (a test); ``float16``
halves the storage at a small, measured cost.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdpipe import files
from kdpipe.config import Params
from kdpipe.data.loader import InMemoryLoader
from kdpipe.data.prepared import PreparedData
from kdpipe.errors import KdpipeError, WriteError
from kdpipe.models import FeatureClassifier
from kdpipe.runtime import view_seed
from kdpipe.workdir import FILE_OVERHEAD, need_space

log = logging.getLogger("kdpipe")

KEY_FILE = "key.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def mode(params: Params) -> str:
    """``method.<name>.cache`` for the configured method; ``off`` for one without a teacher (scratch)."""
    return str(getattr(getattr(params.method, params.method.name, None), "cache", "off"))


def cache_key(params: Params, data: PreparedData, teacher_sha256: str, world_size: int, amp: bool) -> dict[str, Any]:
    """Everything that decides the cached tensors; its sha256 names the cache directory."""
    return {"teacher_sha256": teacher_sha256, "data_sha256": data.sha256, "view_seed": view_seed(params.train),
            "epochs": params.train.epochs, "batch_size": params.train.batch_size, "subset": params.train.subset,
            "sample_seed": params.data.seed, "crop_padding": params.data.crop_padding,
            "hflip": bool(data.manifest["hflip"]), "world_size": world_size, "amp": amp, "dtype": params.cache.dtype}


def epoch_bytes(samples: int, feature_dim: int, num_classes: int, dtype: str) -> int:
    """One epoch's file: pooled features and logits of every view, at ``dtype``."""
    return samples * (feature_dim + num_classes) * DTYPES[dtype].itemsize + FILE_OVERHEAD


class TeacherCache:
    """One key's directory: an epoch-and-rank file per finished epoch, and the key beside them."""

    def __init__(self, root: Path, key: dict[str, Any], rank: int = 0) -> None:
        self.key, self.rank = key, rank
        self.directory = root / files.fingerprint(key)[:16]

    def path(self, epoch: int) -> Path:
        return self.directory / f"epoch{epoch:04d}-rank{self.rank}.pt"

    def has(self, epoch: int) -> bool:
        return self.path(epoch).exists()

    def complete(self) -> bool:
        return all(self.has(e) for e in range(self.key["epochs"]))

    def load(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        blob = files.load_tensors(self.path(epoch))
        return blob["features"], blob["logits"]

    def save(self, epoch: int, features: torch.Tensor, logits: torch.Tensor) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.directory / KEY_FILE).exists():
            files.atomic_write_text(self.directory / KEY_FILE, json.dumps(self.key, indent=2) + "\n")
        dtype = DTYPES[self.key["dtype"]]
        files.atomic_torch_save({"features": features.to(dtype), "logits": logits.to(dtype)}, self.path(epoch))


def _make_room(root: Path, needed: int, budget_gb: float, keep: Path) -> bool:
    """Evict whole key directories, least recently written first (never ``keep``), until ``needed`` more bytes
    fit in ``cache.max_gb``; False when they cannot fit even in an empty cache."""
    budget = budget_gb * 1e9
    if needed > budget:
        return False
    dirs = sorted((d for d in root.iterdir() if d.is_dir() and d != keep), key=lambda d: d.stat().st_mtime) \
        if root.exists() else []
    sizes = {d: sum(f.stat().st_size for f in d.iterdir()) for d in [*dirs, keep] if d.exists()}
    while sum(sizes.values()) + needed > budget and dirs:
        oldest = dirs.pop(0)
        log.info("teacher cache: evicting %s (%.1f MB, least recently written) for cache.max_gb %g", oldest,
                 sizes.pop(oldest) / 1e6, budget_gb)
        shutil.rmtree(oldest, ignore_errors=True)
    return sum(sizes.values()) + needed <= budget


class TeacherOutputs(nn.Module):
    """Stands in for the teacher inside a Distiller: per epoch it replays the cached outputs batch by
    batch, or runs the live teacher and records what it returns (when recording is allowed)."""

    def __init__(self, live: FeatureClassifier | None, cache: TeacherCache, record: bool, feature_dim: int) -> None:
        super().__init__()
        self.live, self.cache, self.record, self.feature_dim = live, cache, record, feature_dim
        self._cached: tuple[torch.Tensor, torch.Tensor] | None = None
        self._recorded: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._offset, self._epoch = 0, -1

    def begin_epoch(self, epoch: int) -> None:
        self._epoch, self._offset, self._recorded = epoch, 0, []
        self._cached = self.cache.load(epoch) if self.cache.has(epoch) else None
        if self._cached is None and self.live is None:
            raise KdpipeError(f"teacher cache {self.cache.directory}: epoch {epoch + 1} is missing and no live teacher is loaded")

    def end_epoch(self) -> None:
        if self._cached is None and self.record and self._recorded:
            features, logits = (torch.cat([r[i] for r in self._recorded]) for i in (0, 1))
            self.cache.save(self._epoch, features, logits)
        self._recorded = []

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cached is not None:
            n, start = len(x), self._offset
            self._offset += n
            features, logits = (t[start: start + n].to(x.device) for t in self._cached)
            if len(features) != n:
                raise KdpipeError(f"teacher cache {self.cache.path(self._epoch)}: holds fewer views than the loader yields")
            return features, logits
        assert self.live is not None
        features, logits = self.live.forward_with_features(x)
        if self.record:
            self._recorded.append((features.detach().float().cpu(), logits.detach().float().cpu()))
        return features, logits


class CachedViews:
    """The training loader, telling the teacher's stand-in where each epoch begins and ends."""

    def __init__(self, loader: InMemoryLoader, outputs: TeacherOutputs) -> None:
        self.loader, self.outputs = loader, outputs

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)
        self.outputs.begin_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_samples(self) -> int:
        return self.loader.num_samples

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from self.loader
        self.outputs.end_epoch()


def attach(params: Params, data: PreparedData, live: FeatureClassifier | None, teacher_sha256: str, samples: int,
           *, rank: int, world_size: int, amp: bool) -> TeacherOutputs | None:
    """The teacher's stand-in for this distill run, or None when the method uses no cache.

    ``samples``: the views per epoch on this rank (what one epoch file holds). ``auto`` records the
    epochs it does not find unless they would exceed ``cache.max_gb`` or the free disk (then it trains
    live and says why); ``require`` refuses to start unless every epoch is cached.
    """
    how = mode(params)
    if how == "off" or live is None:
        return None
    cache = TeacherCache(Path(params.paths.teacher_cache), cache_key(params, data, teacher_sha256, world_size, amp), rank)
    if how == "require" and not cache.complete():
        missing = [e + 1 for e in range(params.train.epochs) if not cache.has(e)]
        raise KdpipeError(f"method.{params.method.name}.cache is require, but {cache.directory} lacks epoch(s) "
                          f"{missing[:5]}{'...' if len(missing) > 5 else ''}; fill it with `kdpipe teacher-cache`")
    todo = sum(not cache.has(e) for e in range(params.train.epochs))
    size = todo * epoch_bytes(samples, live.feature_dim, data.num_classes, params.cache.dtype) * world_size
    record = todo > 0
    if record and not _make_room(Path(params.paths.teacher_cache), size, params.cache.max_gb, cache.directory):
        log.info("teacher cache: %d epoch(s) would need %.2f GB, over cache.max_gb %g; training with the live teacher",
                 todo, size / 1e9, params.cache.max_gb)
        record = False
    elif record:
        try:
            need_space({Path(params.paths.teacher_cache): size}, "teacher cache")
        except WriteError as exc:
            log.info("teacher cache: not recorded (%s); training with the live teacher", exc)
            record = False
    hits = params.train.epochs - todo
    log.info("teacher cache %s: %d of %d epoch(s) cached%s", cache.directory, hits, params.train.epochs,
             "; recording the others" if record else "")
    return TeacherOutputs(None if how == "require" else live, cache, record, live.feature_dim)


@torch.no_grad()
def fill(params: Params, data: PreparedData, live: FeatureClassifier, teacher_sha256: str,
         loaders: list[InMemoryLoader], *, amp: bool, autocast: torch.autocast) -> dict[str, Any]:
    """Record every epoch of every rank's views (``loaders``, one per rank) that the cache lacks: the teacher
    alone, no student, under the training step's precision. Refuses, before any work, what would not fit."""
    world_size = len(loaders)
    if mode(params) == "off":  # scratch, or a method with its cache turned off: distill will not read one
        return {"directory": "", "recorded": 0, "bytes": 0, "epochs": params.train.epochs, "world_size": world_size}
    caches = [TeacherCache(Path(params.paths.teacher_cache),
                           cache_key(params, data, teacher_sha256, world_size, amp), rank)
              for rank in range(world_size)]
    todo = [(rank, e) for rank, cache in enumerate(caches) for e in range(params.train.epochs) if not cache.has(e)]
    size = sum(epoch_bytes(loaders[rank].num_samples, live.feature_dim, data.num_classes, params.cache.dtype)
               for rank, _ in todo)
    if not _make_room(Path(params.paths.teacher_cache), size, params.cache.max_gb, caches[0].directory):
        raise KdpipeError(f"teacher cache: {len(todo)} epoch file(s) need {size / 1e9:.2f} GB, over cache.max_gb "
                          f"{params.cache.max_gb:g}; raise it, or use cache.dtype: float16 ({size / 2e9:.2f} GB)")
    need_space({Path(params.paths.teacher_cache): size}, "teacher cache")
    live.eval()
    for rank, epoch in todo:
        outputs = TeacherOutputs(live, caches[rank], record=True, feature_dim=live.feature_dim)
        views = CachedViews(loaders[rank], outputs)
        views.set_epoch(epoch)
        for x, _ in views:
            with autocast:
                outputs.forward_with_features(x)
        log.info("teacher cache: epoch %d/%d rank %d recorded", epoch + 1, params.train.epochs, rank)
    return {"directory": str(caches[0].directory), "recorded": len(todo), "bytes": size,
            "epochs": params.train.epochs, "world_size": world_size}
