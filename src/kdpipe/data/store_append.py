"""A night that adds images to a set in the prepared store: yesterday's shards kept, only the new images written.

Yesterday's store can be extended when it was made with today's recipe (``data.*``), classes and stable split
(its fingerprint), and every image it holds is still in today's set, at the same path, with the same bytes and
label, split and group, and its shards pass their sha256. Then today's store is yesterday's shards, hard-linked
(nothing is copied or decoded again), and new shards after them holding the images it lacks, split by split; the
per-image record keeps yesterday's rows and adds today's (yesterday's unreadable files are tried again). Anything
else (an image gone, moved, relabelled or placed elsewhere, another recipe, a damaged shard) writes the whole
store again, and the log says why. The images keep yesterday's order first, so the sha256 differs from a fresh
prepare of the same files: it names this store's content and order exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdpipe.config import DataConfig
from kdpipe.data.image_record import IMAGES_FILE, ImageRow, read_record
from kdpipe.data.listing import ImageEntry, Listing
from kdpipe.data.prepared import MANIFEST_FILE, STORE_SECTION, check_recipe
from kdpipe.data.progress import progress
from kdpipe.data.stable_split import SplitScheme
from kdpipe.data.store import FORMAT, STORE_DIR, SplitRecord, verify
from kdpipe.infra.errors import DataError


@dataclass(frozen=True)
class Yesterday:
    """A prepared store today's set can extend."""

    store: Path
    manifest: dict[str, Any]
    records: dict[str, SplitRecord]
    labels: dict[str, list[int]]
    rows: list[ImageRow]
    """Yesterday's images as the record lists them (its skipped files are read again today)."""


def yesterday(
    prepared: Path, data: DataConfig, scheme: SplitScheme, classes: tuple[str, ...], progress_mode: str
) -> Yesterday | str:
    """The store at ``prepared`` when today's prepare may extend it, its shards verified (a damaged one is never
    carried forward); else why not, in a few words."""
    path = prepared / MANIFEST_FILE
    if not path.exists():
        return "no store there yet"
    try:
        manifest = json.loads(path.read_text())
        section = manifest.get(STORE_SECTION)
        if not section or section.get("format") != FORMAT:
            return "yesterday's data is not a prepared store of this format"
        check_recipe(manifest, data.model_dump(), prepared)
        if list(manifest["classes"]) != list(classes):
            return "the classes changed"
        if (manifest.get("split") or {}).get("fingerprint") != scheme.fingerprint:
            return "the split changed"
        records = {s: SplitRecord.from_dict(r) for s, r in section["splits"].items()}
        verify(prepared / STORE_DIR, records, progress_mode)
        labels = {s: np.load(prepared / STORE_DIR / r.labels, allow_pickle=False).tolist() for s, r in records.items()}
        rows = [r for r in read_record(prepared / IMAGES_FILE) if r.status == "ok"]
    except DataError as exc:
        return f"yesterday's store does not fit or fails its check: {exc}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"yesterday's store cannot be read ({type(exc).__name__}: {exc})"
    return Yesterday(prepared / STORE_DIR, manifest, records, labels, rows)


def todays_new(
    listing: Listing,
    before: Yesterday,
    place: Callable[[ImageEntry, str], tuple[str, str]],
    progress_mode: str,
) -> list[ImageEntry] | str:
    """Today's entries that yesterday's store lacks, in listing order (each file read once, to hash it); or why
    the store cannot be extended: an image of yesterday's gone, or one whose label, split or group ``place``
    (today's rule: ``(split, group)`` from an entry and its sha256) would now change."""
    held = {(r.path, r.sha256): r for r in before.rows}
    fresh, seen = [], 0
    with progress("prepare: hashing files against yesterday's store", len(listing.entries), mode=progress_mode) as bar:
        for entry in listing.entries:
            bar.advance()
            sha256 = hashlib.sha256(entry.file.read_bytes()).hexdigest()
            row = held.get((entry.rel, sha256))
            if row is None:
                fresh.append(entry)
                continue
            if row.label != entry.label:
                return f"{entry.rel} changed its label from {row.label!r} to {entry.label!r}"
            if place(entry, sha256) != (row.split, row.group):
                return f"{entry.rel} would now be in {place(entry, sha256)}, yesterday in {(row.split, row.group)}"
            seen += 1
    if seen != len(held):
        return f"{len(held) - seen} of yesterday's images are gone, moved or rewritten"
    return fresh
