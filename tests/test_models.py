"""The model registry: every name builds and exposes pooled features and logits without hooks.

The distillers read features through ``forward_with_features``; a model whose features are not the
input of its classifier would silently distil the wrong layer.
"""

from __future__ import annotations

import pytest
import torch

from kdpipe.config import Params, feature_dim
from kdpipe.models import MODELS, count_parameters, create_model

K = 7


def _check(name: str, in_channels: int, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, K, in_channels).eval()
    x = torch.randn(2, in_channels, size, size)
    with torch.no_grad():
        feats, logits = model.forward_with_features(x)
        assert feats.shape == (2, model.feature_dim)
        assert logits.shape == (2, K)
        assert torch.equal(model(x), model.classifier(feats))
        assert torch.equal(logits, model.classifier(feats))
    assert torch.isfinite(logits).all()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    return model


@pytest.mark.parametrize("name", MODELS.names())
def test_registry_model_gives_features_and_logits(name: str) -> None:
    """Grey 28x28 (the embedded data set) for every registry name."""
    assert feature_dim(name) == _check(name, in_channels=1, size=28).feature_dim


@pytest.mark.parametrize("name", ["resnet8x4", "wrn_16_2", "mobilenetv2"])
def test_cifar_models_take_colour_32x32(name: str) -> None:
    _check(name, in_channels=3, size=32)


def test_torchvision_passthrough_with_one_channel() -> None:
    assert _check("torchvision:resnet18", in_channels=1, size=32).feature_dim == 512


def test_unknown_model_is_named() -> None:
    with pytest.raises(ValueError, match="'no_such_net'"):
        create_model("no_such_net", K, 1)
    with pytest.raises(ValueError, match="no_such_net"):
        create_model("torchvision:no_such_net", K, 1)


def test_default_student_is_at_most_a_tenth_of_the_teacher() -> None:
    """The acceptance asks for a student with at most one tenth of the teacher's parameters."""
    p = Params()
    teacher = count_parameters(create_model(p.teacher.arch, 10, 1))
    student = count_parameters(create_model(p.student.arch, 10, 1))
    assert student * 10 <= teacher
