"""Splits of the benchmark sets, which bring their own train and test: val drawn from train.

Seeded (their default, bit for bit the split kdpipe always made): optional subsets, then ``val_size``
training images drawn with ``data.seed``. Stable (``data.split: stable``): val is the training images
whose pixels hash into ``val_fraction`` (:mod:`kdpipe.data.stable_split`), so val stays put as a set grows.
Either way each image is recorded as ``<its original split>/<its index there>``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from kdpipe.config import DataConfig
from kdpipe.data.image_record import ImageRow, record_writer
from kdpipe.data.prepared import SPLITS
from kdpipe.data.sampling import pick
from kdpipe.data.sources import RawData
from kdpipe.data.stable_split import SplitScheme, seeded_scheme, stable_scheme
from kdpipe.infra.errors import DataError


def seeded_indices(raw: RawData, data: DataConfig) -> dict[str, torch.Tensor]:
    """Indices into the raw train (train, val) and test images; the draws are the ones kdpipe always made."""
    gen = torch.Generator().manual_seed(data.seed)
    train = pick(len(raw.train_y), data.train_subset, gen)
    test = pick(len(raw.test_y), data.test_subset, gen)
    if data.val_size >= len(train) - 1:
        raise DataError(f"data.val_size: {data.val_size} leaves no training images out of {len(train)}")
    perm = torch.randperm(len(train), generator=gen)
    return {
        "train": train[perm[data.val_size :].sort().values],
        "val": train[perm[: data.val_size].sort().values],
        "test": test,
    }


def stable_indices(raw: RawData, data: DataConfig, scheme: SplitScheme) -> dict[str, torch.Tensor]:
    """Val: the training images whose pixels' sha256 falls in val_fraction; subsets drawn with data.seed after."""
    flat = raw.train_x.flatten(1).numpy()
    in_val = torch.tensor([scheme.split_of(hashlib.sha256(row.tobytes()).hexdigest()) == "val" for row in flat])
    gen = torch.Generator().manual_seed(data.seed)
    train = torch.nonzero(~in_val).flatten()
    test = pick(len(raw.test_y), data.test_subset, gen)
    return {
        "train": train[pick(len(train), data.train_subset, gen)],
        "val": torch.nonzero(in_val).flatten(),
        "test": test,
    }


def benchmark_splits(
    raw: RawData, data: DataConfig, stable: bool, record: Path
) -> tuple[dict[str, torch.Tensor], SplitScheme]:
    """The benchmark set's splits as tensors, each image listed in ``record``."""
    if stable and data.group_by is not None:
        raise DataError(f"data.group_by: {data.source} images have no path or column to group by")
    if stable:
        scheme = stable_scheme(data, "sha256 of pixels", own_test=True, own_val=False)
        idx = stable_indices(raw, data, scheme)
    else:
        scheme, idx = seeded_scheme(data), seeded_indices(raw, data)
    tensors: dict[str, torch.Tensor] = {}
    with record_writer(record) as out:
        for split in SPLITS:
            x, y = (raw.test_x, raw.test_y) if split == "test" else (raw.train_x, raw.train_y)
            tensors[f"{split}_x"], tensors[f"{split}_y"] = x[idx[split]].contiguous(), y[idx[split]].contiguous()
            origin = "test" if split == "test" else "train"
            labels = tensors[f"{split}_y"].tolist()
            for i, label in zip(idx[split].tolist(), labels, strict=True):
                out.write(ImageRow(f"{origin}/{i}", raw.classes[label], split))
    for split in SPLITS:
        if not len(tensors[f"{split}_y"]):
            raise DataError(f"data.val_fraction {data.val_fraction}: the {split} split is empty")
    return tensors, scheme
