"""``train:`` and ``teacher.train:``: the optimiser, schedule and budget of a training run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kdpipe.config.section import MAX_BATCH, MAX_EPOCHS, MAX_IMAGES, Section


class TrainConfig(Section):
    epochs: int = Field(8, ge=1, le=MAX_EPOCHS)
    subset: int | None = Field(
        None,
        ge=2,
        le=MAX_IMAGES,
        description="train on a fixed sample of this many train-split images (data.seed picks it); null: all",
    )
    batch_size: int = Field(256, le=MAX_BATCH)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"
    warmup_epochs: int = Field(0, ge=0, le=MAX_EPOCHS)
    milestones: tuple[int, ...] = ()
    gamma: float = Field(0.1, gt=0, le=1)
    seed: int = 0

    @field_validator("milestones", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("batch_size")
    @classmethod
    def _batchnorm_needs_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"must be at least 2, got {value}: BatchNorm in train mode needs 2 samples per batch")
        return value

    @model_validator(mode="after")
    def _check_schedule(self) -> TrainConfig:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be smaller than epochs ({self.epochs})")
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("schedule 'multistep' needs milestones")
        return self


class StudentTrainConfig(TrainConfig):
    view_seed: int | None = Field(
        None,
        description="seed of the training views (order, crops, flips); null: seed. Study seeds and sweep "
        "cells that share it share the views, and so a teacher cache",
    )
    subset_seed: int | None = Field(
        None,
        description="seed that draws the transfer set (subset) from the train split; null: data.seed, which "
        "also splits val off. A fresh transfer set for confirmation without moving the val split or the teacher",
    )
    subset_excludes: int | None = Field(
        None,
        description="draw the transfer set from the train-split images that the draw of this seed (of the same "
        "size) leaves out: confirmation sets that share no image with the tuning set; null: from all of them",
    )

    @model_validator(mode="after")
    def _excludes_needs_a_subset(self) -> StudentTrainConfig:
        if self.subset_excludes is not None and self.subset is None:
            raise ValueError("subset_excludes needs subset: the whole split excludes nothing")
        return self
