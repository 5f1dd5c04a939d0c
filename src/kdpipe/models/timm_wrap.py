"""Any timm classifier as a kdpipe model: timm already splits every net into pooled features and a head.

Weights are never downloaded (``pretrained=False``): a student starts from a file or an MLflow model through
``student.init``. Families whose shapes depend on the input size (ViT, DeiT: ``fixed_input_size`` in timm's
config) are built for the data's size, and their patch shrinks with the image so the token grid stays the
family's own (a 16-px patch on a 28-px image would leave one token; a 2-px patch keeps DeiT's 14 x 14 grid,
and its position embeddings keep the shape of a 224-px checkpoint's).
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import nn

from kdpipe.infra.errors import KdpipeError, UnknownNameError
from kdpipe.models.base import FeatureClassifier


def _timm() -> ModuleType:
    """timm is imported only when a timm model is named: its import takes a second."""
    import timm

    return timm


def is_timm_model(name: str) -> bool:
    return bool(name) and _timm().is_model(name)


def takes_image_size(name: str) -> bool:
    """True for the families whose parameter shapes are built for one input size (ViT, DeiT, Swin, ...)."""
    cfg = _timm().get_pretrained_cfg(name)
    return bool(cfg is not None and getattr(cfg, "fixed_input_size", False))


def _nearest_divisor(n: int, target: float) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - target), d))


def _patch_for(name: str, image_size: int) -> int | None:
    """The patch that keeps the family's token grid at ``image_size``; None when it has no patch embedding."""
    with torch.device("meta"):
        probe = _timm().create_model(name, pretrained=False, num_classes=0)
    embed = getattr(probe, "patch_embed", None)
    grid, patch = getattr(embed, "grid_size", None), getattr(embed, "patch_size", None)
    if not grid or not patch:
        return None
    chosen = _nearest_divisor(image_size, image_size / grid[0])
    return None if chosen == patch[0] else chosen


def timm_net(name: str, num_classes: int, in_chans: int, image_size: int | None = None) -> nn.Module:
    """A plain, randomly initialised ``timm.create_model(name)``, built for ``image_size`` where the family takes it."""
    if not is_timm_model(name):
        raise UnknownNameError(f"unknown timm model {name!r}; timm.list_models('<pattern>') lists its names")
    kwargs: dict[str, int] = {"num_classes": num_classes, "in_chans": in_chans}
    if image_size is not None and takes_image_size(name):
        kwargs["img_size"] = image_size
        patch = _patch_for(name, image_size)
        if patch is not None:
            kwargs["patch_size"] = patch
    try:
        return _timm().create_model(name, pretrained=False, **kwargs)
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise KdpipeError(f"timm model {name!r} cannot be built with {kwargs} ({reason})") from None


class TimmClassifier(FeatureClassifier):
    """Wraps a plain timm net as ``self.net``; features are timm's pooled pre-logits (the CLS or mean token of a ViT).

    The head stays inside ``net``, so ``net``'s state dict is the timm checkpoint's own, with ``net.`` in front.
    """

    def __init__(self, net: nn.Module, image_size: int | None = None) -> None:
        super().__init__()
        head = net.get_classifier()
        if not isinstance(head, nn.Linear):
            raise KdpipeError(f"timm model {type(net).__name__}: its head is {type(head).__name__}, not one Linear")
        self.net = net
        self.feature_dim = head.in_features
        self.image_size = image_size

    @property
    def classifier(self) -> nn.Module:  # type: ignore[override]
        """The net's own head, not a second copy of it in the state dict."""
        return self.net.get_classifier()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)


def timm_classifier(name: str, num_classes: int, in_chans: int, image_size: int | None = None) -> TimmClassifier:
    net = timm_net(name, num_classes, in_chans, image_size)
    return TimmClassifier(net, image_size if image_size is not None and takes_image_size(name) else None)
