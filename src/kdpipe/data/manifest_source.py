"""A manifest source: a CSV (with a header) or JSON Lines file of ``path, label[, group]`` per image.

Paths are relative to the manifest's own folder (absolute ones are taken as they are), so a set moves
with its manifest. Other columns are kept for ``data.group_by`` to name. Classes are the labels in name
order (numerically when every label is a number).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdpipe.data.listing import ImageEntry, Listing, class_order
from kdpipe.infra.errors import DataError

MANIFEST_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
REQUIRED = ("path", "label")


def _rows(path: Path, kind: str) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        if kind == "csv":
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: the header has no {', '.join(missing)} column (it has {reader.fieldnames})")
            for row in reader:
                yield reader.line_num, row
            return
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not a JSON object ({exc})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: not a JSON object")
            yield number, row


def read_manifest(path: Path, group_by: str | None, description: str) -> Listing:
    """The images a manifest lists; ``group_by``, when it names a column, fills each entry's group."""
    kind = MANIFEST_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"data.root {description}: a manifest is a {' or '.join(MANIFEST_SUFFIXES)} file")
    if not path.is_file():
        raise DataError(f"data.root {description}: no such manifest file")
    entries: dict[str, ImageEntry] = {}
    column: str | None = None  # group_by, once the first row shows it is a column
    for number, row in _rows(path, kind):
        if not entries and group_by in row:
            column = group_by
        needed = (*REQUIRED, column) if column else REQUIRED
        missing = [str(c) for c in needed if row.get(c) in (None, "")]
        if missing:
            raise DataError(f"{path}:{number}: no {', '.join(missing)}")
        rel = str(row["path"])
        if rel in entries:
            raise DataError(f"{path}:{number}: {rel} is listed twice")
        entries[rel] = ImageEntry(path.parent / rel, rel, str(row["label"]), None, str(row[column]) if column else None)
    if not entries:
        raise DataError(f"{path}: lists no images")
    ordered = tuple(entries[rel] for rel in sorted(entries))
    classes = class_order({e.label for e in ordered})
    return Listing(ordered, classes, False, False, f"manifest({description})", grouped=column is not None)
