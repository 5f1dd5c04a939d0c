"""What a team's source lists before any image is read: each image's file, label and the split it came in.

Both kinds of source (class folders, a manifest) produce a :class:`Listing`; the images are read and
split from it (:mod:`kdpipe.data.user_images`), so each kind only has to say where its images are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImageEntry:
    file: Path
    rel: str  # as recorded: relative to data.root (class folders) or as the manifest wrote it
    label: str
    given_split: str | None = None  # the source's own split (its train/, val/, test/ folder)
    group: str | None = None  # the manifest's group_by column, when data.group_by names one


@dataclass(frozen=True)
class Listing:
    entries: tuple[ImageEntry, ...]
    classes: tuple[str, ...]
    own_test: bool
    own_val: bool
    description: str
    grouped: bool = False  # each entry carries its group (a manifest column); else data.group_by is a path regex


def class_order(labels: set[str]) -> tuple[str, ...]:
    """Classes in name order, numerically when every label is a number (so 2 comes before 10)."""
    if all(re.fullmatch(r"\d+", label) for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))
