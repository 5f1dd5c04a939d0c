"""The teacher's own input (``teacher.preprocess``, models/teacher_input.py) against an independent computation:
the loader's batch is un-normalised with the data's statistics, resized, given the teacher's channels and
normalised with the teacher's statistics; the logits come back in the data's class order, the features as they are.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdpipe.models.base import FeatureClassifier
from kdpipe.models.teacher_input import IMAGENET_MEAN, IMAGENET_STD, InputSpec, TeacherInput

GREY = ((0.3,), (0.2,))  # the data's mean and std, one channel
RGB = ((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))


class Seen(FeatureClassifier):
    """A teacher that keeps what it was fed; its features are the per-channel means, its logits a fixed row."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.feature_dim, self.classifier, self.fed = 3, nn.Identity(), torch.empty(0)
        self.logits = torch.tensor([logits])

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.fed = x
        return x.mean((2, 3)), self.logits.expand(len(x), -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x)[1]


def _column(values: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(values).view(1, -1, 1, 1)


def test_a_greyscale_batch_becomes_the_rgb_imagenet_input_of_its_size() -> None:
    torch.manual_seed(0)
    unit = torch.rand(2, 1, 28, 28)  # images in [0, 1]
    batch = (unit - GREY[0][0]) / GREY[1][0]  # what the loader hands every model
    teacher = Seen([0.0, 1.0])
    TeacherInput(teacher, InputSpec(*GREY, image_size=32, channels=3, normalize="imagenet"))(batch)
    resized = F.interpolate(unit, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    expected = (resized.expand(-1, 3, -1, -1) - _column(IMAGENET_MEAN)) / _column(IMAGENET_STD)
    assert teacher.fed.shape == (2, 3, 32, 32)
    assert torch.allclose(teacher.fed, expected, atol=1e-5)


def test_an_rgb_batch_becomes_grey_by_its_luma_for_a_one_channel_teacher() -> None:
    torch.manual_seed(1)
    unit = torch.rand(2, 3, 8, 8)
    batch = (unit - _column(RGB[0])) / _column(RGB[1])
    teacher = Seen([0.0])
    TeacherInput(teacher, InputSpec(*RGB, channels=1, normalize="none"))(batch)
    grey = 0.299 * unit[:, :1] + 0.587 * unit[:, 1:2] + 0.114 * unit[:, 2:]
    assert torch.allclose(teacher.fed, grey, atol=1e-5)


def test_shorter_side_crop_keeps_the_centre_square_of_a_wide_image() -> None:
    unit = torch.arange(2 * 4 * 8, dtype=torch.float32).view(1, 2, 4, 8) / 64  # two channels, 4 x 8
    batch = (unit - 0.5) / 0.5
    teacher = Seen([0.0])
    spec = InputSpec((0.5, 0.5), (0.5, 0.5), image_size=4, resize="shorter_side_crop", normalize="none")
    TeacherInput(teacher, spec)(batch)
    assert torch.allclose(teacher.fed, unit[..., :, 2:6], atol=1e-6)  # the shorter side is already 4: no resize


@pytest.mark.parametrize("spec", [InputSpec(*GREY), InputSpec(*GREY, channels=1, normalize="data")])
def test_a_teacher_that_takes_the_data_as_it_is_is_fed_the_loaders_batch_unchanged(spec: InputSpec) -> None:
    batch = torch.randn(3, 1, 6, 6)
    teacher = Seen([0.0])
    assert spec.is_identity()
    TeacherInput(teacher, spec)(batch)
    assert torch.allclose(teacher.fed, batch, atol=1e-6)


def test_logits_come_back_in_the_datas_class_order_and_features_unchanged() -> None:
    teacher = Seen([10.0, 20.0, 30.0])  # the teacher's classes: c, a, b
    order = [1, 2, 0]  # the data's a, b, c are the teacher's outputs 1, 2, 0
    wrapped = TeacherInput(teacher, InputSpec(*GREY), order)
    batch = torch.randn(2, 1, 6, 6)
    features, logits = wrapped.forward_with_features(batch)
    assert logits.tolist() == [[20.0, 30.0, 10.0]] * 2
    assert torch.equal(wrapped(batch), logits)
    assert torch.allclose(features, batch.mean((2, 3)), atol=1e-6)
