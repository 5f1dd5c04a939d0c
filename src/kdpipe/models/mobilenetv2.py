"""MobileNetV2 (Sandler et al. 2018) adapted to small images: stride-1 stem, two fewer downsamplings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdpipe.models.base import FeatureClassifier

# expansion t, output channels c, repeats n, first stride s (CIFAR variant of the ImageNet table)
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _scaled(channels: int, width: float) -> int:
    return max(8, round(channels * width / 8) * 8)


class InvertedResidual(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_planes * expansion
        self.use_residual = stride == 1 and in_planes == planes
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(in_planes, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2(FeatureClassifier):
    def __init__(self, num_classes: int, in_channels: int, width: float = 1.0) -> None:
        super().__init__()
        stem = _scaled(32, width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU6(inplace=True)
        )
        layers: list[nn.Module] = []
        in_planes = stem
        for t, c, n, s in SETTINGS:
            planes = _scaled(c, width)
            for i in range(n):
                layers.append(InvertedResidual(in_planes, planes, s if i == 0 else 1, t))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        last = _scaled(1280, max(1.0, width))
        self.head_conv = nn.Sequential(
            nn.Conv2d(in_planes, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(inplace=True)
        )
        self.feature_dim = last
        self.classifier = nn.Linear(last, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head_conv(self.layers(self.stem(x)))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
