"""The one interface every kdpipe model implements, so distillers never need forward hooks."""

from __future__ import annotations

import torch
from torch import nn


class FeatureClassifier(nn.Module):
    """A classifier split into a pooled-feature extractor and a linear head.

    Subclasses implement :meth:`features` (returning ``[N, feature_dim]``) and set
    ``self.classifier``. ``forward`` returns logits only, so an exported student is an
    ordinary ``nn.Module`` for MLflow and TorchScript alike.
    """

    feature_dim: int
    classifier: nn.Module
    image_size: int | None = None
    """The input size the parameters' shapes were built for (a ViT's), recorded in the model file; None: any."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        return feats, self.classifier(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
