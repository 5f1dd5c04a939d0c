"""Plain VGG-style CNNs sized for the CPU demo: cheap at 28x28, capacity where resolution is low.

``cnn{w}`` has three stages of w/2w/4w channels and a global-average-pooled head; ``cnn{w}_fc{h}``
adds a VGG-like fully connected hidden layer of width h, which is where a large teacher can hold
its parameters without paying for them at full resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from kdpipe.models.base import FeatureClassifier


def _conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class SimpleCNN(FeatureClassifier):
    def __init__(self, width: int, num_classes: int, in_channels: int, hidden: int = 0) -> None:
        super().__init__()
        w = width
        self.trunk = nn.Sequential(
            *_conv_bn_relu(in_channels, w),
            nn.MaxPool2d(2),
            *_conv_bn_relu(w, 2 * w),
            *_conv_bn_relu(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *_conv_bn_relu(2 * w, 4 * w),
            *_conv_bn_relu(4 * w, 4 * w),
        )
        if hidden:
            self.pool: nn.Module = nn.Sequential(
                nn.AdaptiveAvgPool2d(4),
                nn.Flatten(),
                nn.Linear(4 * w * 16, hidden, bias=False),
                nn.BatchNorm1d(hidden),
                nn.ReLU(inplace=True),
            )
            self.feature_dim = hidden
        else:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.feature_dim = 4 * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.trunk(x))
