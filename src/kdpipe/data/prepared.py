"""The prepared data set: fixed splits as uint8 tensors plus a manifest that names them by hash.

Every later step, MLflow run and registered model records the manifest's ``sha256`` so it can say
exactly which data it saw. The files are written to a temporary directory and renamed into place,
so a failed prepare never leaves a half-written data set where a good one was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdpipe.data.image_record import IMAGES_FILE
from kdpipe.data.progress import progress
from kdpipe.data.sources import DEFAULT_HFLIP
from kdpipe.data.stable_split import SplitScheme
from kdpipe.infra.errors import DataError, ForeignFileError
from kdpipe.infra.files import atomic_torch_save, atomic_write_text, load_tensors, write_failure

TENSORS_FILE = "splits.pt"
MANIFEST_FILE = "manifest.json"
SPLITS = ("train", "val", "test")
HASH_CHUNK = 64 << 20  # bytes hashed between two progress updates
RECIPE_KEYS = (
    "source",
    "image_size",
    "val_size",
    "train_subset",
    "test_subset",
    "seed",
    "split",
    "val_fraction",
    "test_fraction",
    "group_by",
    "channels",
    "on_bad_image",
    "max_bad_fraction",
)  # data params that make the data


@dataclass(frozen=True)
class PreparedData:
    tensors: dict[str, torch.Tensor]
    manifest: dict[str, Any]

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tensors[f"{name}_x"], self.tensors[f"{name}_y"]

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.manifest["classes"])

    @property
    def in_channels(self) -> int:
        return int(self.manifest["shape"][0])

    @property
    def sha256(self) -> str:
        return str(self.manifest["sha256"])

    @property
    def split_fingerprint(self) -> str | None:
        """The stable split's fingerprint: equal on two prepared sets, each image is in the same split in both.
        None for a seeded split (or a manifest written before splits were recorded): nothing is provable."""
        split = self.manifest.get("split") or {}
        return str(split["fingerprint"]) if split.get("scheme") == "stable" else None


def content_sha256(tensors: dict[str, torch.Tensor], classes: list[str], progress_mode: str = "auto") -> str:
    """Hash of the splits' bytes, shapes and class names: independent of the file format."""
    digest = hashlib.sha256()
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    with progress("sha256 of the prepared data", total, unit="B", mode=progress_mode) as bar:
        for key in sorted(tensors):
            t = tensors[key].contiguous()
            digest.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
            flat = t.numpy().reshape(-1).view(np.uint8)
            for start in range(0, len(flat), HASH_CHUNK):
                digest.update(flat[start : start + HASH_CHUNK])
                bar.advance(len(flat[start : start + HASH_CHUNK]))
    digest.update(json.dumps(classes).encode())
    return digest.hexdigest()


def pick(n: int, k: int | None, gen: torch.Generator) -> torch.Tensor:
    """Sorted indices of ``k`` of ``n`` items drawn with ``gen`` (all of them when ``k`` is None or too large)."""
    if k is None or k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:k].sort().values


def sample(
    x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int, excluding: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same ``n`` images for a seed, whatever trains on them: a fixed transfer set. ``excluding``: drawn from
    the images that seed ``excluding``'s draw of ``n`` leaves out (too few left is a DataError)."""
    if n is None or n >= len(y):
        return x, y
    if excluding is None:
        idx = pick(len(y), n, torch.Generator().manual_seed(seed))
        return x[idx], y[idx]
    kept = torch.ones(len(y), dtype=torch.bool)
    kept[pick(len(y), n, torch.Generator().manual_seed(excluding))] = False
    rest = kept.nonzero().squeeze(1)
    if n > len(rest):
        raise DataError(
            f"train.subset_excludes: a transfer set of {n} images cannot avoid another of {n}; the split has {len(y)}"
        )
    idx = rest[pick(len(rest), n, torch.Generator().manual_seed(seed))]
    return x[idx], y[idx]


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    xf = x.float().div_(255)
    return xf.mean(dim=(0, 2, 3)).tolist(), xf.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


@contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """A fresh directory beside ``out_dir`` for the block to fill, swapped in when the block succeeds.

    A block that fails (a refused input, a full disk) leaves ``out_dir`` as it was and removes the staging.
    """
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as exc:
        raise write_failure(out_dir, exc) from None
    try:
        yield staging
        try:
            if out_dir.exists():
                retired = out_dir.with_name(f".{out_dir.name}.old")
                shutil.rmtree(retired, ignore_errors=True)
                os.replace(out_dir, retired)
                os.replace(staging, out_dir)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(staging, out_dir)
        except OSError as exc:
            raise write_failure(out_dir, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_data(
    staging: Path,
    tensors: dict[str, torch.Tensor],
    classes: list[str],
    description: str,
    recipe: Mapping[str, Any],
    scheme: SplitScheme,
    progress_mode: str = "auto",
    **extra: Any,
) -> dict[str, Any]:
    """Write the splits and the manifest into ``staging``; ``recipe``: the ``data`` params; ``extra``: more
    manifest entries (what was skipped); ``progress_mode``: ``runtime.progress``."""
    source, seed, hflip = recipe["source"], recipe["seed"], recipe.get("hflip")
    mean, std = channel_stats(tensors["train_x"])
    manifest = {
        "source": source,
        "description": description,
        "classes": classes,
        "shape": list(tensors["train_x"].shape[1:]),
        "splits": {s: len(tensors[f"{s}_y"]) for s in SPLITS},
        "seed": seed,
        "mean": mean,
        "std": std,
        "hflip": DEFAULT_HFLIP[source] if hflip is None else hflip,
        "sha256": content_sha256(tensors, classes, progress_mode),
        "recipe": {key: recipe[key] for key in RECIPE_KEYS},
        "split": scheme.record(),
        "images": IMAGES_FILE,
        **extra,
    }
    atomic_torch_save(tensors, staging / TENSORS_FILE)
    atomic_write_text(staging / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    return manifest


def check_recipe(manifest: Mapping[str, Any], data: Mapping[str, Any], where: Path) -> None:
    """A step reads the data that prepare made: params that would have made other data are refused,
    so that a run's logged ``data.*`` always describe the data it used. (Manifests written before the
    recipe was recorded are not checked.)"""
    recorded = manifest.get("recipe", {})
    for key in RECIPE_KEYS:
        if key in recorded and recorded[key] != data.get(key):
            raise DataError(
                f"data.{key} is {data.get(key)!r}, but {where} was prepared with {recorded[key]!r}; "
                "run `kdpipe prepare` with these params first, so the step uses the data its params name"
            )


def load_prepared(
    out_dir: str | Path, verify: bool = True, expect: Mapping[str, Any] | None = None, progress_mode: str = "auto"
) -> PreparedData:
    """Read a prepared data set; with ``verify`` the content must match the manifest's sha256 (its progress shown
    as ``progress_mode``, ``runtime.progress``, asks), with ``expect`` (the ``data`` params) its recipe must match
    them (:func:`check_recipe`)."""
    out_dir = Path(out_dir)
    manifest_path, tensors_path = out_dir / MANIFEST_FILE, out_dir / TENSORS_FILE
    for p in (manifest_path, tensors_path):
        if not p.exists():
            raise DataError(f"{p}: missing; run `kdpipe prepare` first")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{manifest_path}: not valid JSON ({exc})") from None
    try:
        tensors = load_tensors(tensors_path)
    except ForeignFileError as exc:
        raise DataError(str(exc)) from None
    expected = {f"{s}_{k}" for s in SPLITS for k in "xy"}
    if not isinstance(tensors, dict) or set(tensors) != expected:
        raise DataError(f"{tensors_path}: expected tensors {sorted(expected)}")
    if verify and content_sha256(tensors, manifest["classes"], progress_mode) != manifest.get("sha256"):
        raise DataError(f"{tensors_path}: content does not match the sha256 in {manifest_path}")
    if expect is not None:
        check_recipe(manifest, expect, out_dir)
    return PreparedData(tensors, manifest)
