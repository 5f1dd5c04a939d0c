"""The prepared data set: fixed splits plus a manifest that names them by hash.

A small set is uint8 tensors in one file, loaded whole; a large one is the prepared store
(:mod:`kdpipe.data.store`), its images read when asked. Every later step, MLflow run and registered model
records the manifest's ``sha256`` so it can say exactly which data it saw. The files are written to a temporary
directory and renamed into place, so a failed prepare never leaves a half-written data set where a good one was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdpipe.data import store_splits
from kdpipe.data.image_record import IMAGES_FILE
from kdpipe.data.model_images import CroppedImages, ModelImages
from kdpipe.data.progress import progress
from kdpipe.data.sampling import Images
from kdpipe.data.sources import DEFAULT_HFLIP
from kdpipe.data.stable_split import SplitScheme
from kdpipe.data.store import FORMAT, STORE_DIR, StoreContent, StoredImages, store_sha256
from kdpipe.data.views import SCHEME
from kdpipe.infra.errors import DataError, ForeignFileError
from kdpipe.infra.files import atomic_torch_save, atomic_write_text, load_tensors

TENSORS_FILE = "splits.pt"
MANIFEST_FILE = "manifest.json"
STORE_SECTION = "store"
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
    "resize",
    "stored_size",
)  # data params that make the data (those added later are not checked on manifests written before them)


@dataclass(frozen=True)
class PreparedData:
    tensors: dict[str, Images]
    """``<split>_x`` (images) and ``<split>_y`` (labels) for each split."""
    manifest: dict[str, Any]

    def split(self, name: str) -> tuple[Images, torch.Tensor]:
        return self.tensors[f"{name}_x"], self.tensors[f"{name}_y"]  # type: ignore[return-value]

    def eval_split(self, name: str) -> tuple[ModelImages, torch.Tensor]:
        """The split as a model sees it in evaluation: in memory as it is, from the store centre-cropped."""
        images, labels = self.split(name)
        return (CroppedImages(images, self.image_size) if isinstance(images, StoredImages) else images), labels

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
    def streamed(self) -> bool:
        """Whether the images are in the prepared store (read in batches) rather than in memory."""
        return STORE_SECTION in self.manifest

    @property
    def view_scheme(self) -> str | None:
        """The streamed views' scheme (:data:`kdpipe.data.views.SCHEME`) for the teacher cache key; None in memory."""
        return SCHEME if self.streamed else None

    @property
    def image_size(self) -> int:
        """The size a model sees (the stored size in memory; the store's views are cropped to it)."""
        return int(self.manifest["shape"][-1])

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


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    xf = x.float().div_(255)
    return xf.mean(dim=(0, 2, 3)).tolist(), xf.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


def _manifest(
    classes: list[str],
    description: str,
    recipe: Mapping[str, Any],
    scheme: SplitScheme,
    *,
    shape: list[int],
    splits: dict[str, int],
    mean: list[float],
    std: list[float],
    sha256: str,
    **more: Any,
) -> dict[str, Any]:
    source, hflip = recipe["source"], recipe.get("hflip")
    return {
        "source": source,
        "description": description,
        "classes": classes,
        "shape": shape,
        "splits": splits,
        "seed": recipe["seed"],
        "mean": mean,
        "std": std,
        "hflip": DEFAULT_HFLIP[source] if hflip is None else hflip,
        "sha256": sha256,
        **more,
        "recipe": {key: recipe[key] for key in RECIPE_KEYS},
        "split": scheme.record(),
        "images": IMAGES_FILE,
    }


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
    mean, std = channel_stats(tensors["train_x"])
    manifest = _manifest(
        classes,
        description,
        recipe,
        scheme,
        shape=list(tensors["train_x"].shape[1:]),
        splits={s: len(tensors[f"{s}_y"]) for s in SPLITS},
        mean=mean,
        std=std,
        sha256=content_sha256(tensors, classes, progress_mode),
    )
    atomic_torch_save(tensors, staging / TENSORS_FILE)
    atomic_write_text(staging / MANIFEST_FILE, json.dumps({**manifest, **extra}, indent=2) + "\n")
    return {**manifest, **extra}


def write_store(
    staging: Path,
    content: StoreContent,
    classes: list[str],
    description: str,
    recipe: Mapping[str, Any],
    scheme: SplitScheme,
    **extra: Any,
) -> dict[str, Any]:
    """The manifest of a store written into ``staging / STORE_DIR`` (:class:`kdpipe.data.store_sink.StoreSink`)."""
    picks = {"train": recipe["train_subset"], "test": recipe["test_subset"], "seed": recipe["seed"]}
    counts = {
        s: len(p)
        for s, p in store_splits.positions({s: r.images for s, r in content.records.items()}, picks, SPLITS).items()
    }
    manifest = _manifest(
        classes,
        description,
        recipe,
        scheme,
        shape=[content.shape[0], *([recipe["image_size"]] * 2 if recipe["image_size"] else content.shape[1:])],
        splits=counts,
        mean=content.mean,
        std=content.std,
        sha256=store_sha256(content.shape, content.records, classes, picks),
        **{
            STORE_SECTION: {
                "format": FORMAT,
                "shape": list(content.shape),
                "picks": picks,
                "train_stats": {"sums": content.sums, "pixels": content.pixels},
                "splits": {s: r.as_dict() for s, r in content.records.items()},
            }
        },
    )
    atomic_write_text(staging / MANIFEST_FILE, json.dumps({**manifest, **extra}, indent=2) + "\n")
    return {**manifest, **extra}


def data_files(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """The files of a prepared data set, relative to its directory, the manifest last: uploaded in this order, a
    reader never finds the manifest without its data."""
    if STORE_SECTION in manifest:
        splits = manifest[STORE_SECTION]["splits"].values()
        body = [f"{STORE_DIR}/{name}" for r in splits for name in (*(s["file"] for s in r["shards"]), r["labels"])]
    else:
        body = [TENSORS_FILE]
    return (*body, *([IMAGES_FILE] if manifest.get("images") == IMAGES_FILE else []), MANIFEST_FILE)


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
    if not manifest_path.exists():
        raise DataError(f"{manifest_path}: missing; run `kdpipe prepare` first")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{manifest_path}: not valid JSON ({exc})") from None
    if expect is not None:  # before any hashing: a wrong param is said at once
        check_recipe(manifest, expect, out_dir)
    if STORE_SECTION in manifest:
        tensors = store_splits.open_store(out_dir / STORE_DIR, manifest, verify, progress_mode, SPLITS)
    else:
        tensors = _load_tensors(tensors_path)
        if verify and content_sha256(tensors, manifest["classes"], progress_mode) != manifest.get("sha256"):
            raise DataError(f"{tensors_path}: content does not match the sha256 in {manifest_path}")
    return PreparedData(tensors, manifest)


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise DataError(f"{path}: missing; run `kdpipe prepare` first")
    try:
        tensors = load_tensors(path)
    except ForeignFileError as exc:
        raise DataError(str(exc)) from None
    expected = {f"{s}_{k}" for s in SPLITS for k in "xy"}
    if not isinstance(tensors, dict) or set(tensors) != expected:
        raise DataError(f"{path}: expected tensors {sorted(expected)}")
    return tensors
