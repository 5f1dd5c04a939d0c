"""``data:``: which data set, where its raw files are, its split and its augmentation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kdpipe.config.section import Section


class DataConfig(Section):
    source: Literal["fashion_mnist", "mnist", "cifar10", "cifar100", "imagefolder"] = "fashion_mnist"
    root: str | None = Field(None, description="raw data directory; the ImageFolder root for 'imagefolder'")
    image_size: int | None = Field(None, ge=8, description="resize ImageFolder images to this square size")
    val_size: int = Field(5000, ge=0, description="training images held out for validation")
    train_subset: int | None = Field(None, ge=2, description="keep only this many training images (smoke runs)")
    test_subset: int | None = Field(None, ge=2, description="keep only this many test images (smoke runs)")
    seed: int = 0
    crop_padding: int = Field(2, ge=0)
    hflip: bool | None = Field(None, description="horizontal flips; null picks the data set's default")
