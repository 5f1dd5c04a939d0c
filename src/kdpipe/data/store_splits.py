"""The prepared store's splits as a step reads them: images by reference, labels in memory, subsets applied."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdpipe.data.sampling import Images, pick
from kdpipe.data.store import FORMAT, SplitRecord, StoredImages, store_sha256, verify
from kdpipe.infra.errors import DataError


def positions(counts: Mapping[str, int], picks: Mapping[str, Any], order: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per split, the stored positions a step reads: ``data.train_subset``/``test_subset`` drawn with ``data.seed``
    one split after another in ``order`` (train, val, test), as the in-memory path draws them."""
    gen = torch.Generator().manual_seed(int(picks["seed"]))
    return {split: pick(counts[split], picks.get(split), gen) for split in order}


def open_store(
    directory: Path, manifest: Mapping[str, Any], check: bool, progress_mode: str, order: Sequence[str]
) -> dict[str, Images]:
    """``<split>_x`` (:class:`kdpipe.data.store.StoredImages`) and ``<split>_y`` of the store in ``directory``;
    with ``check`` every shard is re-hashed against the manifest, and the manifest's hashes against its sha256."""
    section = manifest["store"]
    if section.get("format") != FORMAT:
        raise DataError(f"{directory}: store format {section.get('format')!r}; this kdpipe reads {FORMAT!r}")
    records = {s: SplitRecord.from_dict(r) for s, r in section["splits"].items()}
    shape = section["shape"]
    if check:
        if store_sha256(shape, records, manifest["classes"], section["picks"]) != manifest["sha256"]:
            raise DataError(f"{directory}: the shard hashes in the manifest do not match its sha256")
        verify(directory, records, progress_mode)
    kept = positions({s: r.images for s, r in records.items()}, section["picks"], order)
    out: dict[str, Images] = {}
    for split, record in records.items():
        try:
            labels = torch.from_numpy(np.load(directory / record.labels, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise DataError(f"{directory / record.labels}: cannot read the labels ({exc})") from None
        if len(labels) != record.images:
            raise DataError(f"{directory / record.labels}: {len(labels)} labels for {record.images} images")
        out[f"{split}_x"] = StoredImages(directory, record.shards, shape).subset(kept[split])
        out[f"{split}_y"] = labels[kept[split]]
    return out
