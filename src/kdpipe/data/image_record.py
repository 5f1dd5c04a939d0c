"""The per-image record beside the manifest: each image's path, label, split, group, identity and status.

A CSV written row by row as images are read, so it streams at a million images; a skipped image is listed
with its reason and no split. The prepared tensors hold the ``ok`` rows of each split in the record's order.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import TextIO

IMAGES_FILE = "images.csv"


@dataclass(frozen=True)
class ImageRow:
    path: str  # relative to the source's root (a benchmark image: its original split and index)
    label: str
    split: str  # train, val, test; empty for a skipped image
    group: str = ""
    sha256: str = ""  # the file's bytes (the stable split's identity); empty for the benchmark sets
    status: str = "ok"  # ok or skipped
    reason: str = ""


COLUMNS = tuple(f.name for f in fields(ImageRow))


class RecordWriter:
    """Writes one :class:`ImageRow` a line, counting them."""

    def __init__(self, fh: TextIO) -> None:
        self._writer = csv.writer(fh)
        self._writer.writerow(COLUMNS)
        self.rows = 0

    def write(self, row: ImageRow) -> None:
        self._writer.writerow(astuple(row))
        self.rows += 1


@contextmanager
def record_writer(path: Path) -> Iterator[RecordWriter]:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        yield RecordWriter(fh)


def read_record(path: Path) -> Iterator[ImageRow]:
    with open(path, newline="", encoding="utf-8") as fh:
        for values in csv.DictReader(fh):
            yield ImageRow(**values)
