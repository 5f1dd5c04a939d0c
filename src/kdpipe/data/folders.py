"""Class-folder trees: a root of class folders (split by kdpipe), or its train/ and test/ [val/] sub-trees.

A root holding ``train/`` and ``test/`` brings its own test split, and its own val split with ``val/``;
``train/`` and ``val/`` alone is read as train and test (ImageNet's layout, whose val is its test). Any
other root is one tree of class folders. Images may sit in sub-folders of their class folder. A
non-image file is left out with a warning; a class folder without images is an error naming it.
Hidden files and folders (a leading dot) are ignored.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kdpipe.data.listing import ImageEntry, Listing
from kdpipe.data.operational import IMAGE_SUFFIXES
from kdpipe.infra.errors import DataError

log = logging.getLogger("kdpipe")


def _parts(root: Path) -> dict[str | None, Path]:
    """The split each sub-tree brings (None: no split of its own)."""
    train, test, val = root / "train", root / "test", root / "val"
    if train.is_dir() and test.is_dir():
        return {"train": train, "test": test, **({"val": val} if val.is_dir() else {})}
    if train.is_dir() and val.is_dir():
        return {"train": train, "test": val}
    return {None: root}


def _visible(path: Path, below: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(below).parts)


def _class_images(folder: Path, root: Path, label: str, split: str | None) -> list[ImageEntry]:
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and _visible(p, folder)):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            entries.append(ImageEntry(path, path.relative_to(root).as_posix(), label, split))
        else:
            log.warning("%s: not an image (%s), left out", path, " ".join(IMAGE_SUFFIXES))
    if not entries:
        raise DataError(
            f"{folder}: an empty class folder (no {' '.join(IMAGE_SUFFIXES)} images); add images or remove it"
        )
    return entries


def list_folders(root: Path, description: str) -> Listing:
    """Every image under ``root``, labelled by its class folder; ``description``: the root as the user named it."""
    if not root.is_dir():
        raise DataError(f"data.root {description}: not a directory")
    entries: list[ImageEntry] = []
    classes: list[str] = []
    parts = _parts(root)
    for split, tree in parts.items():
        folders = sorted(p for p in tree.iterdir() if p.is_dir() and not p.name.startswith("."))
        for stray in sorted(p for p in tree.iterdir() if p.is_file() and not p.name.startswith(".")):
            log.warning("%s: not in a class folder, left out", stray)
        names = [f.name for f in folders]
        if not names:
            raise DataError(f"{tree}: no class folders (one sub-directory of images per class)")
        if classes and names != classes:
            raise DataError(f"{tree}: classes {names} differ from {parts['train']} classes {classes}")
        classes = names
        for folder in folders:
            entries += _class_images(folder, root, folder.name, split)
    return Listing(tuple(entries), tuple(classes), "test" in parts, "val" in parts, f"ImageFolder({description})")
