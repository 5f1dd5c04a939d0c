"""The teacher's own input and class order, while the student keeps its own.

Loaders hand every model the data's normalised images. A teacher trained elsewhere expects what it was
trained on: another size, three channels where the line camera gives one, ImageNet's mean and std. It
may also list its classes in another order than the data. :class:`TeacherInput` wraps such a teacher:
it undoes the data's normalisation, resizes (a square, or the shorter side then a centre crop), repeats a
greyscale channel (or averages RGB to grey), normalises as the teacher expects, runs it, and reorders
its logits into the data's class order. Features pass through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdpipe.models.base import FeatureClassifier

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601: RGB to grey


@dataclass(frozen=True)
class InputSpec:
    """What the teacher is fed: ``data_mean``/``data_std`` are the data's normalisation (what the loader applied);
    the rest mirror ``teacher.preprocess`` (None: the data's size or channels)."""

    data_mean: tuple[float, ...]
    data_std: tuple[float, ...]
    image_size: int | None = None
    resize: str = "square"
    channels: int | None = None
    normalize: str = "data"

    def is_identity(self) -> bool:
        """True when the teacher sees exactly the student's input."""
        same_channels = self.channels is None or self.channels == len(self.data_mean)
        return self.image_size is None and same_channels and self.normalize == "data"


def _column(values: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


class TeacherInput(FeatureClassifier):
    """``teacher`` fed per ``spec``, its logits picked in ``order`` (the teacher's index of each data class)."""

    def __init__(self, teacher: FeatureClassifier, spec: InputSpec, order: list[int] | None = None) -> None:
        super().__init__()
        self.teacher, self.spec = teacher, spec
        self.feature_dim = teacher.feature_dim
        self.classifier = nn.Identity()
        channels = spec.channels or len(spec.data_mean)
        stats = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "data": (spec.data_mean, spec.data_std)}
        mean, std = (self._channels_of(v, channels) for v in stats.get(spec.normalize, ((0.0,), (1.0,))))
        self.register_buffer("data_mean", _column(spec.data_mean))
        self.register_buffer("data_std", _column(spec.data_std))
        self.register_buffer("mean", _column(mean))
        self.register_buffer("std", _column(std))
        self.register_buffer("order", torch.tensor(order if order is not None else [], dtype=torch.long))

    @staticmethod
    def _channels_of(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
        if len(values) == channels:
            return values
        if len(values) == 1:
            return values * channels
        return (sum(v * w for v, w in zip(values, _LUMA, strict=True)),)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The loader's normalised batch as the teacher's input."""
        spec = self.spec
        x = x.float() * self.data_std + self.data_mean  # back to [0, 1]
        size = spec.image_size
        if size is not None and spec.resize == "square" and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        elif size is not None and spec.resize == "shorter_side_crop":
            h, w = x.shape[-2:]
            scale = size / min(h, w)
            if (round(h * scale), round(w * scale)) != (h, w):
                x = F.interpolate(
                    x, size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False, antialias=True
                )
            top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
            x = x[..., top : top + size, left : left + size]
        channels = spec.channels or x.shape[1]
        if channels != x.shape[1]:
            x = x.repeat(1, channels, 1, 1) if x.shape[1] == 1 else (x * _column(_LUMA).to(x)).sum(1, keepdim=True)
        return (x - self.mean) / self.std

    def _reorder(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.index_select(1, self.order) if len(self.order) else logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._reorder(self.teacher(self.prepare(x)))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits = self.teacher.forward_with_features(self.prepare(x))
        return features, self._reorder(logits)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher.features(self.prepare(x))
