"""The exported student: the trained classifier with the data normalisation baked in.

Users of a registered model feed float32 images in [0, 1] (``N x C x H x W``), the way most image
libraries hand them out, and never need the training set's mean and std: the wrapper applies the
prepared manifest's normalisation itself. The projector is not part of it: only the classifier's
forward (features then head) is exported.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class ServingClassifier(nn.Module):
    """``logits = net((x - mean) / std)`` for ``x`` in [0, 1]."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class SlicedImages(Protocol):
    """uint8 images ``[N, C, H, W]`` read a slice at a time: a tensor, or a streamed split's centre crops
    (:class:`kdpipe.data.model_images.CroppedImages`), which are read only when sliced."""

    def __len__(self) -> int: ...

    def __getitem__(self, key: slice) -> torch.Tensor: ...


@torch.no_grad()
def predict_unit_images(model: nn.Module, images: SlicedImages, batch_size: int = 1000) -> torch.Tensor:
    """Logits of a serving model (exported modules cannot switch to eval) for uint8 images."""
    outs = [model(images[i : i + batch_size].float().div_(255)) for i in range(0, len(images), batch_size)]
    return torch.cat(outs).float().cpu()
