"""The architectures kdpipe builds, by name: every model is a name for :func:`create_model` (params.yaml
spells it in `teacher.arch` and `student.arch`)."""

from __future__ import annotations

from collections.abc import Callable

from kdpipe.infra.factories import Factories
from kdpipe.models.base import FeatureClassifier
from kdpipe.models.cnn import SimpleCNN
from kdpipe.models.mobilenetv2 import MobileNetV2
from kdpipe.models.resnet import NARROW, WIDE_X4, CifarResNet
from kdpipe.models.timm_wrap import is_timm_model, timm_classifier
from kdpipe.models.torchvision_wrap import TorchvisionClassifier
from kdpipe.models.wrn import WideResNet

Builder = Callable[[int, int], FeatureClassifier]


def _cnn(width: int, hidden: int = 0) -> Builder:
    return lambda k, c: SimpleCNN(width, k, c, hidden=hidden)


def _resnet(depth: int, widths: tuple[int, int, int, int] = NARROW) -> Builder:
    return lambda k, c: CifarResNet(depth, widths, k, c)


def _wrn(depth: int, widen: int) -> Builder:
    return lambda k, c: WideResNet(depth, widen, k, c)


TORCHVISION_PREFIX = "torchvision:"
TIMM_PREFIX = "timm:"

MODELS: Factories[FeatureClassifier] = Factories(
    "model",
    {
        **{f"cnn{w}": _cnn(w) for w in (8, 16, 32, 64)},
        **{f"cnn{w}_fc{h}": _cnn(w, h) for w in (16, 32, 64) for h in (256, 512, 1024)},
        **{f"resnet{d}": _resnet(d) for d in (8, 14, 20, 32, 44, 56, 110)},
        "resnet8x4": _resnet(8, WIDE_X4),
        "resnet32x4": _resnet(32, WIDE_X4),
        **{f"wrn_{d}_{w}": _wrn(d, w) for d in (16, 40) for w in (1, 2, 4)},
        "mobilenetv2": lambda k, c: MobileNetV2(k, c, width=1.0),
        "mobilenetv2_w0.5": lambda k, c: MobileNetV2(k, c, width=0.5),
    },
    patterns=[f"{TORCHVISION_PREFIX}<name>", f"{TIMM_PREFIX}<name>"],
)


def is_known_model(name: str) -> bool:
    if name.startswith(TIMM_PREFIX):
        return is_timm_model(name[len(TIMM_PREFIX) :])
    return name in MODELS or (name.startswith(TORCHVISION_PREFIX) and len(name) > len(TORCHVISION_PREFIX))


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size: int | None = None) -> FeatureClassifier:
    """Build a fresh, randomly initialised model by name; ``image_size`` (the data's) shapes a ViT, not a CNN."""
    if name.startswith(TORCHVISION_PREFIX):
        return TorchvisionClassifier(name[len(TORCHVISION_PREFIX) :], num_classes, in_channels)
    if name.startswith(TIMM_PREFIX):
        return timm_classifier(name[len(TIMM_PREFIX) :], num_classes, in_channels, image_size)
    return MODELS.create(name, num_classes, in_channels)


def count_parameters(model: FeatureClassifier) -> int:
    return sum(p.numel() for p in model.parameters())
