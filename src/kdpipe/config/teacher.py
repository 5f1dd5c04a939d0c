"""``teacher:``: which model the student learns from, and how the demo's teacher is trained here."""

from __future__ import annotations

from pydantic import Field

from kdpipe.config.section import Section
from kdpipe.config.train import TrainConfig


class TeacherConfig(Section):
    source: str = Field("train", description="'train', a checkpoint path, or a models:/ URI")
    arch: str = "cnn32_fc512"
    train: TrainConfig = TrainConfig(epochs=15)
