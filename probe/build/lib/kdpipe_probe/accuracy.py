"""Top-1 of an exported student on a folder of labelled images, read with Pillow: one sub-folder per class.

A sub-folder is named by its class name as the file's metadata lists it, or by the class's index (class names
may hold characters a folder name cannot, such as ``/``). Images are converted to the file's channels (``L`` for
one, ``RGB`` for three), resized to its input size (bilinear) and scaled to [0, 1]: the exported contract.
"""

from __future__ import annotations

import json
from pathlib import Path

from kdpipe_probe.runtimes import CLASSES, ProbeError
from kdpipe_probe.timing import Run

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def labelled(root: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """Every image under ``root``'s class folders with its label; an unknown folder is an error naming it."""
    if not root.is_dir():
        raise ProbeError(f"{root}: not a folder of class folders")
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name in classes:
            label = classes.index(folder.name)
        elif folder.name.isdigit() and int(folder.name) < len(classes):
            label = int(folder.name)
        else:
            raise ProbeError(f"{folder}: names no class of the model (by name or index 0-{len(classes) - 1})")
        found += [(p, label) for p in sorted(folder.rglob("*")) if p.suffix.lower() in SUFFIXES]
    if not found:
        raise ProbeError(f"{root}: no images in class folders")
    return found


def top1(run: Run, props: dict[str, str], shape: tuple[int, ...], root: Path, batch_size: int = 64) -> dict:
    """Top-1 and the number of images scored."""
    import numpy as np
    from PIL import Image

    if CLASSES not in props:
        raise ProbeError(f"the file has no {CLASSES} in its metadata: it cannot score {root}")
    images = labelled(root, json.loads(props[CLASSES]))
    channels, height, width = shape
    mode = "L" if channels == 1 else "RGB"
    right = 0
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        arrays = []
        for path, _ in chunk:
            with Image.open(path) as image:
                resized = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(resized, dtype=np.float32) / 255.0
            arrays.append(array[None] if channels == 1 else array.transpose(2, 0, 1))
        predicted = np.asarray(run(np.stack(arrays))).argmax(1)
        right += int((predicted == np.array([label for _, label in chunk])).sum())
    return {"top1": right / len(images), "images": len(images)}
