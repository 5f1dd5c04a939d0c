"""A split's images as a model sees them in evaluation, without holding a streamed split in memory.

In memory that is the uint8 tensor itself. From the prepared store it is :class:`CroppedImages`: each image's
central crop at the model's size (:func:`kdpipe.data.views.center_crops`), read when sliced. Code that walks
images in slices (``images[i : i + batch]``: ONNX, OpenVINO and serving predictions) works on either; code that
transforms a whole split at once (the corruption suite) walks :func:`parts` instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from kdpipe.data.store import StoredImages
from kdpipe.data.views import center_crops

PART = 512  # images a streamed split is transformed in at once: 77 MiB of uint8 at 224 px RGB, 4x that as floats


class CroppedImages:
    """``stored``'s images, each the central ``size x size`` crop, read when indexed."""

    def __init__(self, stored: StoredImages, size: int) -> None:
        self.stored, self.size = stored, size

    def __len__(self) -> int:
        return len(self.stored)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), self.stored.image_shape[0], self.size, self.size)

    def __getitem__(self, key: slice | torch.Tensor | np.ndarray) -> torch.Tensor:
        index = np.arange(*key.indices(len(self))) if isinstance(key, slice) else key
        return center_crops(self.stored.read(index), self.size).contiguous()


ModelImages = torch.Tensor | CroppedImages


def parts(images: ModelImages, size: int = PART) -> Iterator[torch.Tensor]:
    """The images as tensors: a tensor whole (as before the store existed), a streamed split ``size`` at a time."""
    if isinstance(images, torch.Tensor):
        yield images
        return
    for start in range(0, len(images), size):
        yield images[start : start + size]
