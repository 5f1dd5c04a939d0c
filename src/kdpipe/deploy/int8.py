"""The student as ONNX static int8 and its top-1: measured one way, for validate's export and for the study.

The int8 model is ONNX Runtime's static QDQ quantisation of the fp32 export
(:func:`kdpipe.deploy.onnx.quantize_int8`), calibrated on a fixed sample of the transfer set
(:func:`calibration_images`), run on the CPU at ``export.threads`` threads and scored with the one top-1
(:func:`kdpipe.models.top1.top1`). Validate decides on the result whether int8 is offered
(:mod:`kdpipe.deploy.deployment`); the study reports it beside each run's fp32 top-1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdpipe.config import ExportConfig, Params
from kdpipe.data.prepared import PreparedData
from kdpipe.data.sampling import sample
from kdpipe.data.views import center_crops
from kdpipe.deploy import onnx as export
from kdpipe.models.top1 import top1
from kdpipe.training.runtime import transfer_seed


@dataclass(frozen=True)
class Int8Top1:
    """The int8 model's top-1 on ``split``, and how many transfer-set images calibrated it."""

    top1: float
    split: str
    calibration_images: int


def calibration_images(params: Params, data: PreparedData) -> torch.Tensor:
    """A fixed sample of the transfer set (``train.subset`` of the train split, drawn by :func:`transfer_seed`)."""
    transfer = sample(*data.split("train"), params.train.subset, transfer_seed(params), params.train.subset_excludes)
    images = sample(*transfer, params.export.calibration_size, params.data.seed)[0]
    return (
        images if isinstance(images, torch.Tensor) else center_crops(images.read(range(len(images))), data.image_size)
    )


def measure_int8(params: Params, data: PreparedData, fp32: Path, path: Path, split: str) -> Int8Top1:
    """Quantise the student's fp32 export ``fp32`` to static int8 at ``path`` and measure its top-1 on ``split``."""
    calibration = calibration_images(params, data)
    export.quantize_int8(fp32, calibration, path, "student")
    images, labels = data.eval_split(split)
    logits = export.onnx_logits(export.session(path, params.export.threads), images)
    return Int8Top1(top1(logits, labels), split, len(calibration))


def int8_verdict(
    cfg: ExportConfig, split: str, fp32_top1: float, int8_top1: float, calibration: int, runtime: str
) -> dict[str, Any]:
    """Whether an int8 model is offered: its top-1 on the gate split trails fp32's by at most
    ``export.max_int8_drop``."""
    drop = fp32_top1 - int8_top1
    offered = drop <= cfg.max_int8_drop
    reason = (
        ""
        if offered
        else (
            f"{runtime} int8 top-1 {int8_top1:.4f} trails fp32 {fp32_top1:.4f} by {drop:.4f} on the {split} split, "
            f"over export.max_int8_drop {cfg.max_int8_drop:.4f}"
        )
    )
    return {
        "split": split,
        "fp32_top1": fp32_top1,
        "int8_top1": int8_top1,
        "drop": drop,
        "offered": offered,
        "calibration_images": calibration,
        "reason": reason,
    }
