"""A team's images (class folders or a manifest, local or remote), read, checked and split, in memory or on disk.

Each image is read once (:mod:`kdpipe.data.decoding`, in worker processes for large sets): its bytes are hashed
(its identity for the stable split, unless data.group_by groups it), decoded, resized and listed in the
per-image record as it goes. A set whose decoded images fit ``data.in_memory_max_gb`` (or ``data.store:
memory``) becomes uint8 tensors at ``data.image_size``; a larger one (or ``data.store: disk``) goes into the
prepared store (:mod:`kdpipe.data.store`) at :func:`stored_size`, shard by shard, never whole in memory.

Channels are kept: a greyscale image (PIL modes 1, L, LA, I, F) stays one channel, any other becomes RGB
(alpha dropped). ``data.channels`` converts every image to 1 or 3; left null, a set that mixes both is
converted to its majority (RGB on a tie), so one odd colour frame does not turn a greyscale set to RGB (the
store, written as images arrive, takes the majority from the files' headers first).

Bad images: with ``data.on_bad_image: fail`` the first unreadable file is an error naming it; with
``skip`` it is left out and listed (status ``skipped``), and more than ``data.max_bad_fraction`` of the
set still is an error.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from kdpipe.config import DataConfig
from kdpipe.data.decoding import decoded, header_channels, worker_count
from kdpipe.data.folders import list_folders
from kdpipe.data.image_record import ImageRow, record_writer
from kdpipe.data.listing import ImageEntry, Listing
from kdpipe.data.manifest_source import read_manifest
from kdpipe.data.operational import conform
from kdpipe.data.prepared import SPLITS
from kdpipe.data.progress import progress
from kdpipe.data.references import fetch, is_remote, parse
from kdpipe.data.sampling import pick
from kdpipe.data.stable_split import SplitScheme, compile_group, path_group, stable_scheme
from kdpipe.data.store import StoreContent
from kdpipe.data.store_append import Yesterday, todays_new, yesterday
from kdpipe.data.store_sink import StoreSink
from kdpipe.infra.errors import DataError
from kdpipe.infra.files import need_space

log = logging.getLogger("kdpipe")
STORE_MARGIN = 8 / 7  # the store keeps this much more than the training size: 256 for 224


@dataclass(frozen=True)
class UserData:
    classes: list[str]
    description: str
    scheme: SplitScheme
    skipped: int
    tensors: dict[str, torch.Tensor] | None = None
    """The in-memory path's splits; None when the images went to the store."""
    store: StoreContent | None = None


@contextmanager
def local_root(uri: str, is_file: bool) -> Iterator[Path]:
    """``data.root`` as a local path: a local or ``pvc:`` path as it is, an ``s3://`` or ``dvc+`` one fetched
    into a scratch folder for the block (a manifest with the folder it sits in)."""
    if not is_remote(uri):
        yield Path(uri.removeprefix("pvc:"))
        return
    ref = parse(uri, what="data.root")
    folder, _, name = ref.location.rpartition("/") if is_file else (ref.location, "", "")
    with tempfile.TemporaryDirectory(prefix="kdpipe-data-") as scratch:
        fetch(replace(ref, location=folder), Path(scratch) / "root", what="data.root")
        yield Path(scratch) / "root" / name if is_file else Path(scratch) / "root"


def stored_size(data: DataConfig) -> int | None:
    """The store's image size: ``data.stored_size``, else :data:`STORE_MARGIN` times ``data.image_size``."""
    if data.stored_size is not None or data.image_size is None:
        return data.stored_size
    return math.ceil(data.image_size * STORE_MARGIN)


class _InMemory:
    """The in-memory path's images, per split, in the listing's order."""

    def __init__(self, resized: bool, sized: bool) -> None:
        self.out: dict[str, tuple[list[torch.Tensor], list[int]]] = {s: ([], []) for s in SPLITS}
        self.resized, self.sized, self.first = resized, sized, ("", (0, 0, 0))

    def add(self, split: str, image: np.ndarray, label: int, name: str) -> None:
        t = torch.from_numpy(image)
        if not self.first[0]:
            self.first = (name, tuple(t.shape))
        elif not self.resized and tuple(t.shape[1:]) != self.first[1][1:]:
            raise DataError(
                f"{name}: {t.shape[2]}x{t.shape[1]} pixels, but {self.first[0]} has "
                f"{self.first[1][2]}x{self.first[1][1]}; set data.image_size to resize every image"
                + (" (and a data.resize other than none)" if self.sized else "")
            )
        self.out[split][0].append(t)
        self.out[split][1].append(label)


class Placement:
    """Where an image goes: its group (``data.group_by``) and split, from its entry and its bytes' sha256."""

    def __init__(self, listing: Listing, data: DataConfig, scheme: SplitScheme) -> None:
        self.pattern = compile_group(data.group_by) if data.group_by and not listing.grouped else None
        self.scheme = scheme

    def group(self, entry: ImageEntry) -> str | None:
        return path_group(self.pattern, entry.rel) if self.pattern else entry.group

    def __call__(self, entry: ImageEntry, sha256: str) -> tuple[str, str]:
        """(split, group) of the image; the group is "" when it has none."""
        group = self.group(entry)
        if entry.given_split in ("val", "test"):
            return entry.given_split, group or ""
        identity = f"group:{group}" if group is not None else f"sha256:{sha256}"
        return self.scheme.split_of(identity), group or ""


def _read_all(
    listing: Listing,
    data: DataConfig,
    scheme: SplitScheme,
    record: Path,
    sink: _InMemory | StoreSink,
    size: int | None,
    progress_mode: str,
    carried: list[ImageRow] | None = None,
) -> int:
    """Hand each image to ``sink`` with its split, in the listing's order; how many files were skipped.
    ``carried``: rows of yesterday's store, written to ``record`` before today's."""
    place, index = Placement(listing, data, scheme), {c: i for i, c in enumerate(listing.classes)}
    skipped = 0
    files = [e.file for e in listing.entries]
    images = decoded(files, size, data.resize, worker_count(data.workers, len(files)))
    with (
        record_writer(record) as rows,
        progress("prepare: reading images", len(files), mode=progress_mode) as bar,
    ):
        for row in carried or ():
            rows.write(row)
        for entry, got in zip(listing.entries, images, strict=True):
            bar.advance()
            if got.image is None:
                if data.on_bad_image == "fail":
                    raise DataError(
                        f"{entry.file}: cannot read the image ({got.error}); "
                        "data.on_bad_image: skip leaves such files out"
                    )
                skipped += 1
                rows.write(ImageRow(entry.rel, entry.label, "", place.group(entry) or "", "", "skipped", got.error))
                continue
            split, group = place(entry, got.sha256)
            sink.add(split, got.image, index[entry.label], str(entry.file))
            rows.write(ImageRow(entry.rel, entry.label, split, group, got.sha256))
    return skipped


def _check_bad(total: int, skipped: int, data: DataConfig, record: str) -> None:
    if skipped > data.max_bad_fraction * total:
        raise DataError(
            f"{skipped} of {total} images cannot be read ({skipped / total:.1%}), more than data.max_bad_fraction "
            f"{data.max_bad_fraction}: is data.root the right set?"
        )
    if skipped:
        log.warning("prepare: %d of %d images cannot be read and were left out (listed in %s)", skipped, total, record)


def _channels(images: list[torch.Tensor], wanted: int | None) -> int:
    grey = sum(1 for t in images if t.shape[0] == 1)
    return wanted or (1 if grey > len(images) - grey else 3)


def _empty_hint(data: DataConfig) -> str:
    return (
        f"val_fraction {data.val_fraction}, test_fraction {data.test_fraction}: the set is too small for them, "
        "or data.group_by leaves too few groups"
    )


def _stack(out: dict, data: DataConfig) -> dict[str, torch.Tensor]:
    channels = _channels([t for s in SPLITS for t in out[s][0]], data.channels)
    tensors: dict[str, torch.Tensor] = {}
    gen = torch.Generator().manual_seed(data.seed)
    for split in SPLITS:
        images, labels = out[split]
        if not images:
            raise DataError(f"no image fell in the {split} split ({_empty_hint(data)})")
        x = torch.stack(
            [t if t.shape[0] == channels else conform(t[None], (channels, *t.shape[1:]))[0] for t in images]
        )
        y = torch.tensor(labels, dtype=torch.long)
        subset = {"train": data.train_subset, "test": data.test_subset}.get(split)
        keep = pick(len(y), subset, gen)
        tensors[f"{split}_x"], tensors[f"{split}_y"] = x[keep].contiguous(), y[keep].contiguous()
    return tensors


def uses_store(data: DataConfig, files: int, channels: int) -> bool:
    """``data.store`` resolved: ``auto`` is the disk store when the decoded set would pass ``data.in_memory_max_gb``."""
    if data.store != "auto" or data.image_size is None:
        return data.store == "disk"
    return files * channels * data.image_size**2 > data.in_memory_max_gb * 1e9


def _to_store(
    listing: Listing, data: DataConfig, scheme: SplitScheme, record: Path, store: Path, mode: str, previous: Path | None
) -> tuple[StoreContent, int]:
    before = yesterday(previous, data, scheme, listing.classes, mode) if previous else "no store there yet"
    place = Placement(listing, data, scheme)
    fresh = todays_new(listing, before, place, mode) if isinstance(before, Yesterday) else before
    size = stored_size(data)
    if isinstance(before, Yesterday) and not isinstance(fresh, str):
        log.info(
            "prepare: yesterday's store holds %d of today's %d images; writing the %d new ones in new shards",
            len(listing.entries) - len(fresh),
            len(listing.entries),
            len(fresh),
        )
        channels, listing = before.manifest["store"]["shape"][0], replace(listing, entries=tuple(fresh))
    else:
        log.info("prepare: writing the whole store (%s)", fresh)
        channels = data.channels or header_channels([e.file for e in listing.entries])
    if size is not None:
        need_space({store: len(listing.entries) * channels * size * size}, "prepared store's shards")
    sink = StoreSink(store, channels, SPLITS)
    if isinstance(before, Yesterday) and not isinstance(fresh, str):
        sink.carry(before.store, before.records, before.labels, before.manifest)
        skipped = _read_all(listing, data, scheme, record, sink, size, mode, carried=before.rows)
    else:
        skipped = _read_all(listing, data, scheme, record, sink, size, mode)
    _check_bad(len(listing.entries), skipped, data, record.name)  # before an empty split can be the complaint
    return sink.close(_empty_hint(data)), skipped


def load_user_data(
    data: DataConfig, record: Path, store: Path, progress_mode: str = "auto", previous: Path | None = None
) -> UserData:
    """Read ``data.root`` (class folders or a manifest), split it stably, and list each image in ``record``;
    a set for the disk store (:func:`uses_store`) is written under ``store``, extending the store prepared at
    ``previous`` where it can (:mod:`kdpipe.data.store_append`). ``progress_mode``: ``runtime.progress``."""
    if data.root is None:
        raise DataError(
            f"data.root: a {data.source} source needs its {'manifest file' if data.source == 'manifest' else 'folder'}"
        )
    with local_root(data.root, is_file=data.source == "manifest") as root:
        if data.source == "manifest":
            listing = read_manifest(root, data.group_by, data.root)
        else:
            listing = list_folders(root, data.root)
        scheme = stable_scheme(data, "sha256 of file bytes", own_test=listing.own_test, own_val=listing.own_val)
        total = len(listing.entries)
        if uses_store(data, total, data.channels or 3):
            content, skipped = _to_store(listing, data, scheme, record, store, progress_mode, previous)
            return UserData(list(listing.classes), listing.description, scheme, skipped, store=content)
        sized = data.image_size is not None
        memory = _InMemory(resized=sized and data.resize != "none", sized=sized)
        skipped = _read_all(listing, data, scheme, record, memory, data.image_size, progress_mode)
    _check_bad(total, skipped, data, record.name)
    return UserData(list(listing.classes), listing.description, scheme, skipped, tensors=_stack(memory.out, data))
