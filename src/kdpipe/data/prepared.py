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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdpipe.data.sources import DEFAULT_HFLIP, RawData
from kdpipe.infra.errors import DataError, ForeignFileError
from kdpipe.infra.files import atomic_torch_save, atomic_write_text, load_tensors, write_failure

TENSORS_FILE = "splits.pt"
MANIFEST_FILE = "manifest.json"
SPLITS = ("train", "val", "test")
RECIPE_KEYS = (
    "source",
    "image_size",
    "val_size",
    "train_subset",
    "test_subset",
    "seed",
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


def content_sha256(tensors: dict[str, torch.Tensor], classes: list[str]) -> str:
    """Hash of the splits' bytes, shapes and class names: independent of the file format."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.numpy().tobytes())
    digest.update(json.dumps(classes).encode())
    return digest.hexdigest()


def _take(x: torch.Tensor, y: torch.Tensor, n: int | None, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None or n >= len(y):
        return x, y
    idx = torch.randperm(len(y), generator=gen)[:n].sort().values
    return x[idx], y[idx]


def sample(x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same ``n`` images for a seed, whatever trains on them: a fixed transfer set."""
    return _take(x, y, n, torch.Generator().manual_seed(seed))


def build_splits(
    raw: RawData, val_size: int, seed: int, train_subset: int | None = None, test_subset: int | None = None
) -> dict[str, torch.Tensor]:
    """Deterministic for a seed: optional subsets, then a validation split held out from train."""
    gen = torch.Generator().manual_seed(seed)
    train_x, train_y = _take(raw.train_x, raw.train_y, train_subset, gen)
    test_x, test_y = _take(raw.test_x, raw.test_y, test_subset, gen)
    if val_size >= len(train_y) - 1:
        raise DataError(f"data.val_size: {val_size} leaves no training images out of {len(train_y)}")
    perm = torch.randperm(len(train_y), generator=gen)
    val_idx, train_idx = perm[:val_size].sort().values, perm[val_size:].sort().values
    return {
        "train_x": train_x[train_idx].contiguous(),
        "train_y": train_y[train_idx].contiguous(),
        "val_x": train_x[val_idx].contiguous(),
        "val_y": train_y[val_idx].contiguous(),
        "test_x": test_x.contiguous(),
        "test_y": test_y.contiguous(),
    }


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    xf = x.float().div_(255)
    return xf.mean(dim=(0, 2, 3)).tolist(), xf.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


def write_prepared(
    out_dir: Path, tensors: dict[str, torch.Tensor], raw: RawData, recipe: Mapping[str, Any]
) -> dict[str, Any]:
    """Stage the splits and the manifest beside ``out_dir``, then swap them in; ``recipe``: the ``data`` params."""
    source, seed, hflip = recipe["source"], recipe["seed"], recipe.get("hflip")
    mean, std = channel_stats(tensors["train_x"])
    manifest = {
        "source": source,
        "description": raw.description,
        "classes": raw.classes,
        "shape": list(tensors["train_x"].shape[1:]),
        "splits": {s: len(tensors[f"{s}_y"]) for s in SPLITS},
        "seed": seed,
        "mean": mean,
        "std": std,
        "hflip": DEFAULT_HFLIP[source] if hflip is None else hflip,
        "sha256": content_sha256(tensors, raw.classes),
        "recipe": {key: recipe[key] for key in RECIPE_KEYS},
    }
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as exc:
        raise write_failure(out_dir, exc) from None
    try:
        atomic_torch_save(tensors, staging / TENSORS_FILE)
        atomic_write_text(staging / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            retired = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(out_dir, retired)
            os.replace(staging, out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_failure(out_dir, exc) from None
        raise
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


def load_prepared(out_dir: str | Path, verify: bool = True, expect: Mapping[str, Any] | None = None) -> PreparedData:
    """Read a prepared data set; with ``verify`` the content must match the manifest's sha256, with
    ``expect`` (the ``data`` params) its recipe must match them (:func:`check_recipe`)."""
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
    if verify and content_sha256(tensors, manifest["classes"]) != manifest.get("sha256"):
        raise DataError(f"{tensors_path}: content does not match the sha256 in {manifest_path}")
    if expect is not None:
        check_recipe(manifest, expect, out_dir)
    return PreparedData(tensors, manifest)
