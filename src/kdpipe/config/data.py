"""``data:``: which data set, where its raw files are, how it is split, and its augmentation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kdpipe.config.section import MAX_IMAGES, MAX_PIXELS, Section


class DataConfig(Section):
    source: Literal["fashion_mnist", "mnist", "cifar10", "cifar100", "imagefolder", "manifest"] = Field(
        "fashion_mnist",
        description="a benchmark set, 'imagefolder' (a root of class folders, or train/ and test/ [val/] of them) "
        "or 'manifest' (a CSV or JSON Lines file of path, label[, group])",
    )
    root: str | None = Field(
        None,
        description="raw data directory (default data/raw); the ImageFolder root, or the manifest file; "
        "local, s3://, dvc+ or pvc: as data references accept them",
    )
    image_size: int | None = Field(
        None, ge=8, le=MAX_PIXELS, description="the size a model sees: images are resized to it (data.resize)"
    )
    resize: Literal["square", "shorter_side", "none"] = Field(
        "square",
        description="how a team's images reach their size: square (aspect ignored), shorter_side (shorter side to "
        "the size, then the central square) or none (every image must have one size)",
    )
    store: Literal["auto", "memory", "disk"] = Field(
        "auto",
        description="memory: uint8 tensors (small sets); disk: the prepared store, streamed; auto: disk when the "
        "decoded images would pass data.in_memory_max_gb",
    )
    in_memory_max_gb: float = Field(4.0, gt=0, description="store: auto keeps sets up to this size in memory")
    stored_size: int | None = Field(
        None,
        ge=8,
        le=MAX_PIXELS,
        description="the disk store's image size, from which training crops are drawn; null: 8/7 of image_size",
    )
    workers: int | None = Field(
        None, ge=0, le=1024, description="decoding processes at prepare; null: one per core for large sets; 0: none"
    )
    split: Literal["auto", "stable", "seeded"] = Field(
        "auto",
        description="stable: each image's split is a pure function of its identity, so a growing set never moves "
        "an image between train, val and test; seeded: val_size images drawn with data.seed (the benchmark sets' "
        "split); auto: seeded for the benchmark sets, stable for imagefolder and manifest",
    )
    val_size: int = Field(
        5000, ge=0, le=MAX_IMAGES, description="seeded split: training images held out for validation"
    )
    val_fraction: float = Field(0.1, gt=0, lt=1, description="stable split: the share of images held out for val")
    test_fraction: float = Field(
        0.1, gt=0, lt=1, description="stable split: the share held out for test, when the source has no test split"
    )
    group_by: str | None = Field(
        None,
        description="stable split: keep each group on one side; a manifest column, or a regex on an image's "
        "relative path (its first group, else the whole match)",
    )
    channels: Literal[1, 3] | None = Field(
        None, description="null keeps the images' own channels (greyscale stays one); 1 or 3 converts"
    )
    on_bad_image: Literal["fail", "skip"] = Field(
        "fail", description="an unreadable image: fail naming it, or skip it (listed in the manifest)"
    )
    max_bad_fraction: float = Field(
        0.01, ge=0, le=1, description="with on_bad_image: skip, more unreadable images than this share is an error"
    )
    train_subset: int | None = Field(
        None, ge=2, le=MAX_IMAGES, description="keep only this many training images (smoke runs)"
    )
    test_subset: int | None = Field(
        None, ge=2, le=MAX_IMAGES, description="keep only this many test images (smoke runs)"
    )
    seed: int = 0
    crop_padding: int = Field(2, ge=0, le=MAX_PIXELS)
    hflip: bool | None = Field(None, description="horizontal flips; null picks the data set's default")

    @model_validator(mode="after")
    def _check_stored_size(self) -> DataConfig:
        if self.stored_size is not None and self.image_size is not None and self.stored_size < self.image_size:
            raise ValueError(
                f"stored_size ({self.stored_size}) must be at least image_size ({self.image_size}): training crops "
                "and the evaluation's central crop are cut from the stored image"
            )
        return self
