"""The in-memory batch loader: uint8 tensors on the device, augmentation on whole batches.

For 28x28 or 32x32 images a per-image ``Dataset`` with worker processes spends its time in
Python; here one epoch is a permutation, and a batch is an index, a vectorised random crop,
a flip and a normalisation.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def random_crop(x: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and take an independent random ``HxW`` window per image."""
    if padding == 0:
        return x
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=gen.device).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=gen.device).to(x.device)
    # two gathers (rows, then columns) move far less index data than one 3-d advanced index
    rows = (dy[:, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * padding)
    cols = (dx[:, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def random_hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=gen, device=gen.device) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def epoch_order(
    n: int, train: bool, seed: int, epoch: int, rank: int, world_size: int, device: torch.device
) -> torch.Tensor:
    """The epoch's image order: a permutation from ``(seed, epoch)`` for training, the split's order otherwise;
    with ``world_size > 1`` this rank's equal share of it (every rank the same count when training, for DDP)."""
    if not train:
        idx = torch.arange(n, device=device)
    else:
        gen = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + epoch)
        idx = torch.randperm(n, generator=gen).to(device)
    if world_size > 1:
        per_rank = n // world_size if train else -(-n // world_size)
        idx = idx[rank::world_size][:per_rank]
    return idx


def batch_count(n: int, batch_size: int, train: bool) -> int:
    """Batches in an epoch of ``n``: a last training batch of one image is dropped (BatchNorm cannot use it)."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 or (rest == 1 and not train) else 0)


class EpochBatches:
    """What both loaders share: the epoch's order (:func:`epoch_order`) and batch count, and the normalisation.
    ``on_device``: the labels and the order live on ``device`` (in memory) or on the CPU (streamed)."""

    def __init__(
        self,
        labels: torch.Tensor,
        batch_size: int,
        mean: list[float],
        std: list[float],
        *,
        train: bool,
        hflip: bool,
        seed: int,
        device: torch.device | str,
        channels_last: bool,
        rank: int,
        world_size: int,
        on_device: bool,
    ) -> None:
        self.device = torch.device(device)
        self.order_device = self.device if on_device else torch.device("cpu")
        self.labels = labels.to(self.order_device)
        self.batch_size, self.train, self.hflip, self.seed = batch_size, train, hflip, seed
        self.rank, self.world_size, self.channels_last = rank, world_size, channels_last
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.labels)
        return epoch_order(n, self.train, self.seed, self.epoch, self.rank, self.world_size, self.order_device)

    @property
    def num_samples(self) -> int:
        return len(self._indices())

    def __len__(self) -> int:
        return batch_count(self.num_samples, self.batch_size, self.train)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        out = self.normalize_into(x, torch.empty(x.shape, device=x.device))
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def normalize_into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """uint8 ``x`` as floats scaled to [0, 1] and standardised per channel, written into ``out`` (its memory
        format kept)."""
        return out.copy_(x).div_(255).sub_(self.mean).div_(self.std)


class InMemoryLoader(EpochBatches):
    """Iterates ``(float images, labels)`` batches over uint8 tensors held on ``device``.

    Shuffling and augmentation draw from a generator seeded by ``(seed, epoch)``, so an epoch is
    the same whether the run was resumed or not. With ``world_size > 1`` each rank takes its own
    equal-sized shard of the same permutation (DDP). A training batch of a single image is
    dropped: BatchNorm cannot use it.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean: list[float],
        std: list[float],
        *,
        train: bool = False,
        crop_padding: int = 0,
        hflip: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8, got {images.dtype}")
        super().__init__(
            labels, batch_size, mean, std, train=train, hflip=hflip, seed=seed, device=device,
            channels_last=channels_last, rank=rank, world_size=world_size, on_device=True,
        )  # fmt: skip
        self.images = images.to(self.device)
        self.crop_padding = crop_padding

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self._indices()
        gen = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.epoch + 7)
        for start in range(0, len(idx), self.batch_size):
            batch = idx[start : start + self.batch_size]
            if self.train and len(batch) < 2:
                break
            x = self.images[batch]
            if self.train:
                x = random_crop(x, self.crop_padding, gen)
                if self.hflip:
                    x = random_hflip(x, gen)
            yield self.normalize(x), self.labels[batch]
