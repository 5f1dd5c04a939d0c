"""Fixed samples of a split: the same images for a seed, whatever trains on them, in memory or in the store."""

from __future__ import annotations

import torch

from kdpipe.data.store import StoredImages
from kdpipe.infra.errors import DataError

Images = torch.Tensor | StoredImages
"""A split's images: uint8 tensors in memory, or the prepared store's, read when asked."""


def pick(n: int, k: int | None, gen: torch.Generator) -> torch.Tensor:
    """Sorted indices of ``k`` of ``n`` items drawn with ``gen`` (all of them when ``k`` is None or too large)."""
    if k is None or k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:k].sort().values


def take(x: Images, idx: torch.Tensor) -> Images:
    """``x[idx]``: a copy in memory, a view (nothing read) in the store."""
    return x.subset(idx) if isinstance(x, StoredImages) else x[idx]


def sample(
    x: Images, y: torch.Tensor, n: int | None, seed: int, excluding: int | None = None
) -> tuple[Images, torch.Tensor]:
    """The same ``n`` images for a seed, whatever trains on them: a fixed transfer set. ``excluding``: drawn from
    the images that seed ``excluding``'s draw of ``n`` leaves out (too few left is a DataError)."""
    if n is None or n >= len(y):
        return x, y
    if excluding is None:
        idx = pick(len(y), n, torch.Generator().manual_seed(seed))
        return take(x, idx), y[idx]
    kept = torch.ones(len(y), dtype=torch.bool)
    kept[pick(len(y), n, torch.Generator().manual_seed(excluding))] = False
    rest = kept.nonzero().squeeze(1)
    if n > len(rest):
        raise DataError(
            f"train.subset_excludes: a transfer set of {n} images cannot avoid another of {n}; the split has {len(y)}"
        )
    idx = rest[pick(len(rest), n, torch.Generator().manual_seed(seed))]
    return take(x, idx), y[idx]
