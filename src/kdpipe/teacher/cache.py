"""The teacher's outputs for exactly the views a student sees: computed once, replayed by every student.

The teacher's no-grad forward is most of a distillation step (``benchmarks/step.py``), yet every
nightly run, study cell and seed recomputes it on the same images. The training loader's views are
a pure function of (data, ``train.view_seed``, epoch, batch size, crop padding, flips, transfer-set
sample, rank), so the teacher's pooled features and logits for epoch ``e`` can be stored once and
read back batch by batch, in the order the loader yields them.

The cache lives under ``paths.teacher_cache``, one directory per key (:func:`kdpipe.identity.cache_key`:
the sha256 of the teacher file, how it is read and fed (:func:`kdpipe.teacher.stored.identity_of`), the data,
every view parameter, the epoch count, world size, precision and dtype): any change is a miss, never a wrong
hit. Each epoch (and rank) is one file, written atomically, so an interrupted fill keeps its finished epochs.
``cache.mode``: ``auto`` replays the epochs found and records the others while training live (filled lazily
on first use), ``require`` fails unless every epoch is there, ``off`` never touches it. ``kdpipe teacher-cache``
fills it ahead. ``cache.max_gb`` bounds the whole directory: recording evicts the least recently written keys first
(the directories, files and budget are :mod:`kdpipe.teacher.cache_store`'s).

With ``cache.dtype: float32`` a replayed run is bit-identical to a live one (a test); ``float16``
halves the storage at a small, measured cost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdpipe import identity
from kdpipe.config import Params
from kdpipe.data.prepared import PreparedData
from kdpipe.data.progress import progress
from kdpipe.data.streaming import Loader
from kdpipe.infra.errors import KdpipeError, WriteError
from kdpipe.infra.files import need_space
from kdpipe.models import FeatureClassifier
from kdpipe.teacher import stored
from kdpipe.teacher.cache_store import EpochReader, EpochWriter, TeacherCache, directory_size, epoch_bytes, make_room
from kdpipe.training.runtime import Runtime

log = logging.getLogger("kdpipe")


def mode(params: Params) -> str:
    """``cache.mode``; ``off`` for a method without a teacher (scratch), which has no outputs to cache."""
    return "off" if params.method.name == "scratch" else params.cache.mode


def cache_key(
    params: Params, data: PreparedData, teacher_sha256: str, world_size: int, runtime: Runtime
) -> dict[str, Any]:
    """:func:`kdpipe.identity.cache_key` of this run's teacher, data, views and runtime (the key's own sections)."""
    return identity.cache_key(
        teacher_sha256=teacher_sha256,
        data=data,
        data_cfg=params.data,
        train=params.train,
        cache=params.cache,
        world_size=world_size,
        device_type=runtime.device.type,
        amp=runtime.amp,
        channels_last=params.runtime.channels_last,
        how=stored.identity_of(stored.read(Path(params.paths.teacher))),
    )


class TeacherOutputs(nn.Module):
    """Stands in for the teacher inside a Distiller: per epoch it replays the cached outputs batch by
    batch, or runs the live teacher and records what it returns (when recording is allowed)."""

    def __init__(self, live: FeatureClassifier | None, cache: TeacherCache, record: bool, feature_dim: int) -> None:
        super().__init__()
        self.live, self.cache, self.record, self.feature_dim = live, cache, record, feature_dim
        self._reader: EpochReader | None = None
        self._writer: EpochWriter | None = None
        self._next: tuple[torch.Tensor, torch.Tensor] | None = None
        self._labels = torch.empty(0, dtype=torch.long)
        self._epoch = -1

    def begin_epoch(self, epoch: int) -> None:
        self._epoch, self._next = epoch, None
        self._reader = self.cache.reader(epoch) if self.cache.has(epoch) else None
        if self._reader is None and self.live is None:
            raise KdpipeError(
                f"teacher cache {self.cache.directory}: epoch {epoch + 1} is missing and no live teacher is loaded"
            )
        self._writer = self.cache.writer(epoch) if self._reader is None and self.record else None

    def expect(self, labels: torch.Tensor) -> None:
        """The next batch's labels: a replay takes that batch's rows and checks their labels (a view that moved is
        an error, never silently another image's teacher output); a recording keeps them for its rows."""
        labels = labels.detach().cpu()
        if self._reader is None:
            self._labels = labels
            return
        at = self._reader.offset
        rows = self._reader.take(len(labels))
        if rows is None:  # evicted meanwhile by another run's recording: the live teacher takes over
            if self.live is None:
                raise KdpipeError(
                    f"teacher cache {self.cache.directory}: epoch {self._epoch + 1} was evicted meanwhile"
                )
            log.info("teacher cache: epoch %d was evicted meanwhile; the live teacher takes over", self._epoch + 1)
            self._reader, self._labels = None, labels
            return
        if len(rows[2]) < len(labels):
            raise KdpipeError(f"teacher cache {self.cache.path(self._epoch)}: holds fewer views than the loader yields")
        if not torch.equal(rows[2], labels):
            raise KdpipeError(
                f"teacher cache {self.cache.path(self._epoch)}: the loader's views differ from the recorded "
                f"ones at view {at} (labels disagree); delete the file or set the cache off"
            )
        self._next = rows[0], rows[1]

    def end_epoch(self) -> None:
        if self._reader is not None and self._reader.offset != self._reader.total:
            raise KdpipeError(
                f"teacher cache {self.cache.path(self._epoch)}: holds {self._reader.total} views, the "
                f"loader yielded {self._reader.offset}"
            )
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._reader is not None:
            if self._next is None:
                raise KdpipeError("teacher cache: a replayed batch was asked for before its labels were given")
            features, logits = (t.to(x.device) for t in self._next)
            self._next = None
            return features, logits
        assert self.live is not None
        features, logits = self.live.forward_with_features(x)
        if self._writer is not None:
            self._writer.add(features.detach().float().cpu(), logits.detach().float().cpu(), self._labels)
        return features, logits


class CachedViews:
    """The training loader, telling the teacher's stand-in where each epoch begins and ends."""

    def __init__(self, loader: Loader, outputs: TeacherOutputs) -> None:
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
        for x, y in self.loader:
            self.outputs.expect(y)
            yield x, y
        self.outputs.end_epoch()


def attach(
    params: Params,
    data: PreparedData,
    live: FeatureClassifier | None,
    teacher_sha256: str,
    samples: int,
    *,
    rank: int,
    world_size: int,
    runtime: Runtime,
) -> TeacherOutputs | None:
    """The teacher's stand-in for this distill run, or None when the method uses no cache.

    ``samples``: the views per epoch on this rank (what one epoch file holds). ``auto`` records the
    epochs it does not find unless they would exceed ``cache.max_gb`` or the free disk (then it trains
    live and says why); ``require`` refuses to start unless every epoch is cached.
    """
    how = mode(params)
    if how == "off" or live is None:
        return None
    cache = TeacherCache(
        Path(params.paths.teacher_cache), cache_key(params, data, teacher_sha256, world_size, runtime), rank
    )
    if how == "require" and not cache.complete():
        missing = [e + 1 for e in range(params.train.epochs) if not cache.has(e)]
        raise KdpipeError(
            f"cache.mode is require, but {cache.directory} lacks epoch(s) "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''}; fill it with `kdpipe teacher-cache`"
        )
    todo = sum(not cache.has(e) for e in range(params.train.epochs))
    size = todo * epoch_bytes(samples, live.feature_dim, data.num_classes, params.cache.dtype) * world_size
    record = todo > 0
    room = (
        make_room(Path(params.paths.teacher_cache), size, params.cache.max_gb, cache.directory)
        if rank == 0
        else directory_size(cache.directory) + size <= params.cache.max_gb * 1e9
    )  # only rank 0 evicts
    if record and not room:
        log.info(
            "teacher cache: %d epoch(s) would need %.2f GB, over cache.max_gb %g; training with the live teacher",
            todo,
            size / 1e9,
            params.cache.max_gb,
        )
        record = False
    elif record:
        try:
            need_space({Path(params.paths.teacher_cache): size}, "teacher cache")
        except WriteError as exc:
            log.info("teacher cache: not recorded (%s); training with the live teacher", exc)
            record = False
    hits = params.train.epochs - todo
    log.info(
        "teacher cache %s: %d of %d epoch(s) cached%s",
        cache.directory,
        hits,
        params.train.epochs,
        "; recording the others" if record else "",
    )
    return TeacherOutputs(None if how == "require" else live, cache, record, live.feature_dim)


@torch.no_grad()
def fill(
    params: Params,
    data: PreparedData,
    live: FeatureClassifier,
    teacher_sha256: str,
    views: Callable[[int], Loader],
    world_size: int,
    runtime: Runtime,
) -> dict[str, Any]:
    """Record every epoch of every rank's views that the cache lacks: the teacher
    alone, no student, under the training step's precision. ``views(rank)`` builds a rank's loader (one at a
    time: each holds the transfer set on the device). Refuses, before any work, what would not fit."""
    if mode(params) == "off":  # scratch, or a method with its cache turned off: distill will not read one
        return {"directory": "", "recorded": 0, "bytes": 0, "epochs": params.train.epochs, "world_size": world_size}
    caches = [
        TeacherCache(
            Path(params.paths.teacher_cache), cache_key(params, data, teacher_sha256, world_size, runtime), rank
        )
        for rank in range(world_size)
    ]
    todo = {rank: [e for e in range(params.train.epochs) if not cache.has(e)] for rank, cache in enumerate(caches)}
    files_todo = sum(len(epochs) for epochs in todo.values())
    samples = views(0).num_samples  # every rank's shard of the transfer set is the same size
    size = files_todo * epoch_bytes(samples, live.feature_dim, data.num_classes, params.cache.dtype)
    if not make_room(Path(params.paths.teacher_cache), size, params.cache.max_gb, caches[0].directory):
        raise KdpipeError(
            f"teacher cache: {files_todo} epoch file(s) need {size / 1e9:.2f} GB, over cache.max_gb "
            f"{params.cache.max_gb:g}; raise it, or use cache.dtype: float16 ({size / 2e9:.2f} GB)"
        )
    need_space({Path(params.paths.teacher_cache): size}, "teacher cache")
    live.eval()
    for rank, epochs in todo.items():
        if not epochs:
            continue
        outputs = TeacherOutputs(live, caches[rank], record=True, feature_dim=live.feature_dim)
        loader = CachedViews(views(rank), outputs)
        for epoch in epochs:
            loader.set_epoch(epoch)
            what = f"teacher cache: epoch {epoch + 1}/{params.train.epochs} rank {rank}"
            with progress(what, loader.num_samples, mode=runtime.progress) as bar:
                for x, _ in loader:
                    with runtime.autocast:
                        outputs.forward_with_features(x)
                    bar.advance(len(x))
            log.info("%s recorded", what)
    return {
        "directory": str(caches[0].directory),
        "recorded": files_todo,
        "bytes": size,
        "epochs": params.train.epochs,
        "world_size": world_size,
    }
