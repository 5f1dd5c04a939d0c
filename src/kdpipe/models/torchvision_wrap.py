"""Any torchvision classifier as a kdpipe model, split at its final linear layer."""

from __future__ import annotations

import torch
from torch import nn

from kdpipe.models.base import FeatureClassifier


def _split_head(net: nn.Module) -> tuple[str, nn.Linear]:
    for attr in ("fc", "classifier", "head", "heads"):
        head = getattr(net, attr, None)
        if isinstance(head, nn.Linear):
            return attr, head
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            return attr, head[-1]
    raise ValueError(f"cannot find the final linear layer of torchvision model {type(net).__name__}")


class TorchvisionClassifier(FeatureClassifier):
    """Wraps ``torchvision.models.<name>`` with randomly initialised weights (no downloads here)."""

    def __init__(self, name: str, num_classes: int, in_channels: int) -> None:
        super().__init__()
        import torchvision

        try:
            net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        except ValueError as exc:
            raise ValueError(f"unknown torchvision model {name!r}") from exc
        attr, head = _split_head(net)
        if in_channels != 3:
            self.adapt: nn.Module = nn.Conv2d(in_channels, 3, 1)
        else:
            self.adapt = nn.Identity()
        container = getattr(net, attr)
        if container is head:
            setattr(net, attr, nn.Identity())
        else:
            container[-1] = nn.Identity()
        self.body = net
        self.feature_dim = head.in_features
        self.classifier = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.body(self.adapt(x)), 1)
