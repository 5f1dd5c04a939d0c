"""``teacher:``: which model the student learns from, how kdpipe reads it, and how the demo's teacher is trained."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kdpipe.config.section import MAX_PIXELS, Section
from kdpipe.config.train import TrainConfig


class TeacherPreprocess(Section):
    """What the teacher sees: its own input size, channels and normalisation, while the student keeps its own."""

    image_size: int | None = Field(None, ge=8, le=MAX_PIXELS, description="the teacher's input size; null: the data's")
    resize: Literal["square", "shorter_side_crop"] = Field(
        "square",
        description="square: resize to image_size x image_size; shorter_side_crop: shorter side to image_size, "
        "then a centre crop",
    )
    channels: Literal[1, 3] | None = Field(
        None, description="the teacher's input channels; null: the data's; 3 repeats greyscale for an RGB teacher"
    )
    normalize: Literal["data", "imagenet", "none"] = Field(
        "data", description="data: the data's mean and std (as the student); imagenet: ImageNet's; none: [0, 1]"
    )


class TeacherConfig(Section):
    source: str = Field(
        "train",
        description="'train' (bootstrap the demo's teacher), an MLflow model URI (models:/, runs:/), or a file: "
        "a kdpipe model, TorchScript, torch.export .pt2, or a state dict with teacher.arch",
    )
    arch: str = Field(
        "cnn32_fc512",
        description="the architecture for 'train' and for a state dict: kdpipe's names, torchvision:<name>, "
        "timm:<name>",
    )
    feature_layer: str | None = Field(
        None,
        description="the module (or TorchScript/pt2 graph node) whose output, pooled when spatial, is the "
        "teacher's feature; null: where kdpipe knows it (kdpipe, torchvision and timm models)",
    )
    classes: list[str] | str | None = Field(
        None,
        description="the teacher's classes in its output order: a list, or a file with one class a line; null: "
        "those recorded with the model",
    )
    preprocess: TeacherPreprocess = TeacherPreprocess()
    trust_pickle: bool = Field(
        False,
        description="load pickle-format MLflow models, which run code when loaded; TorchScript, pt2, state dicts "
        "and kdpipe files are read weights-only whatever this says",
    )
    train: TrainConfig = TrainConfig(epochs=15)
