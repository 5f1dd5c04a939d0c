"""Operational data sets: labelled field data, brought to the training data's classes and image shape.

A set (``validate.operational``) is an ImageFolder directory (one sub-directory per class, named by
:func:`folder_name`) or a prepared data directory (its ``split``), local or behind an ``s3://`` or
``dvc+`` reference (:mod:`kdpipe.data.references`). Its classes must be the training data's, by
name and in any order; its images are resized to the training shape and converted to its channels,
so the models see them exactly as they see the test split.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdpipe.config import OperationalSetConfig
from kdpipe.data.prepared import MANIFEST_FILE, load_prepared
from kdpipe.data.references import fetch, is_remote, parse
from kdpipe.infra.errors import DataError, KdpipeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class OperationalSet:
    """One set as the models read it: uint8 ``[N, C, H, W]`` images and labels in the training classes' order."""

    name: str
    source: str
    kind: str  # "imagefolder" or "prepared"
    images: torch.Tensor
    labels: torch.Tensor

    @property
    def digest(self) -> str:
        """sha256 of the images and labels as measured: what MLflow's dataset input and the report name."""
        h = hashlib.sha256()
        for t in (self.images, self.labels):
            h.update(str(tuple(t.shape)).encode())
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()


def folder_name(class_name: str) -> str:
    """The sub-directory holding a class's images: its name with '/' (not allowed in a path) as '_'."""
    return class_name.replace("/", "_")


def _error(spec: OperationalSetConfig, message: str) -> DataError:
    return DataError(f"validate.operational '{spec.name}' ({spec.source}): {message}")


def _label_map(spec: OperationalSetConfig, found: list[str], classes: list[str], by: str) -> dict[str, int]:
    """Index in the training classes of each class the set names; any difference is an error naming both sides."""
    expected = {folder_name(c) if by == "folder" else c: i for i, c in enumerate(classes)}
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        raise _error(
            spec, f"its classes are not the training data's: missing {missing or 'none'}, extra {extra or 'none'}"
        )
    return expected


def conform(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 images in the training data's (channels, height, width): resized bilinearly, grey <-> RGB converted."""
    from torchvision.transforms.v2 import functional as TF

    channels, height, width = shape
    if images.shape[1] != channels:
        if channels == 1 and images.shape[1] == 3:
            images = TF.rgb_to_grayscale(images)
        elif channels == 3 and images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1).contiguous()
        else:
            raise KdpipeError(f"cannot convert {images.shape[1]}-channel images to {channels} channels")
    if tuple(images.shape[2:]) != (height, width):
        images = TF.resize(images, [height, width], antialias=True)
    return images.contiguous()


def _read_imagefolder(
    spec: OperationalSetConfig, root: Path, classes: list[str], shape: tuple[int, int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as TF

    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    index = _label_map(spec, folders, classes, by="folder")
    mode, size = ("L" if shape[0] == 1 else "RGB"), (shape[2], shape[1])
    images, labels = [], []
    for folder in folders:
        for path in sorted(p for p in (root / folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                with Image.open(path) as img:
                    img = img.convert(mode)
                    images.append(TF.pil_to_tensor(img if img.size == size else img.resize(size, Image.BILINEAR)))
            except (OSError, UnidentifiedImageError) as exc:
                raise _error(spec, f"{path}: cannot read the image ({exc})") from None
            labels.append(index[folder])
    if not images:
        raise _error(spec, f"no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)


def _read_prepared(
    spec: OperationalSetConfig, root: Path, classes: list[str], shape: tuple[int, int, int], progress_mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        data = load_prepared(root, verify=True, progress_mode=progress_mode)
    except KdpipeError as exc:
        raise _error(spec, str(exc)) from None
    index = _label_map(spec, data.classes, classes, by="name")
    images, labels = data.eval_split(spec.split)
    if not len(labels):
        raise _error(spec, f"its {spec.split} split is empty")
    remap = torch.tensor([index[c] for c in data.classes], dtype=torch.long)
    return conform(images[0 : len(labels)], shape), remap[labels]  # a streamed set read whole: field sets are small


def _read(spec: OperationalSetConfig, root: Path, manifest: dict[str, Any], progress_mode: str) -> OperationalSet:
    if not root.is_dir():
        raise _error(spec, f"{root} is not a directory")
    channels, height, width = (int(s) for s in manifest["shape"])
    classes, shape = list(manifest["classes"]), (channels, height, width)
    if (root / MANIFEST_FILE).exists():
        return OperationalSet(
            spec.name, spec.source, "prepared", *_read_prepared(spec, root, classes, shape, progress_mode)
        )
    return OperationalSet(spec.name, spec.source, "imagefolder", *_read_imagefolder(spec, root, classes, shape))


def load(spec: OperationalSetConfig, manifest: dict[str, Any], progress_mode: str = "auto") -> OperationalSet:
    """The set named by ``spec``, checked against and conformed to the training data's ``manifest``;
    ``progress_mode``: ``runtime.progress``, for the verification of a prepared set."""
    if not is_remote(spec.source):
        return _read(spec, Path(spec.source.removeprefix("pvc:")), manifest, progress_mode)
    ref = parse(spec.source, what=f"validate.operational '{spec.name}'")
    with tempfile.TemporaryDirectory(prefix=f"kdpipe-operational-{spec.name}-") as scratch:
        root = Path(scratch) / "set"
        fetch(ref, root, what=f"validate.operational '{spec.name}'")
        return _read(spec, root, manifest, progress_mode)


def load_all(
    specs: tuple[OperationalSetConfig, ...], manifest: dict[str, Any], progress_mode: str = "auto"
) -> list[OperationalSet]:
    return [load(spec, manifest, progress_mode) for spec in specs]
