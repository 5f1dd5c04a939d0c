"""What the study measures on a finished run or teacher, through the measurement path validate uses.

Top-1 is :func:`kdpipe.evaluation.metrics.predict_logits` then :func:`kdpipe.evaluation.metrics.top1`; the
corruption suite is :func:`kdpipe.evaluation.robustness.measure`; int8 is :func:`kdpipe.deploy.int8.measure_int8`.
Nothing is chosen on the corruption suite or on int8: they are reported beside the distillation gain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdpipe.config import Params, ValidateConfig
from kdpipe.data.prepared import PreparedData
from kdpipe.deploy import onnx as export
from kdpipe.deploy.deployment import input_shape
from kdpipe.deploy.int8 import measure_int8
from kdpipe.evaluation import robustness
from kdpipe.evaluation.metrics import predict_logits
from kdpipe.evaluation.metrics import top1 as score
from kdpipe.models.top1 import hits
from kdpipe.study.corrected import pack
from kdpipe.training.runtime import Runtime, eval_loader, images_loader, place_model


def top1(model: torch.nn.Module, data: PreparedData, split: str, runtime: Runtime) -> float:
    """The model's top-1 on ``split``."""
    return score(_logits(model, data, split, runtime), data.split(split)[1])


def top1_and_test_hits(model: torch.nn.Module, data: PreparedData, runtime: Runtime) -> dict[str, Any]:
    """Test top-1, and which test images it got right (packed, :func:`kdpipe.study.corrected.pack`): what the
    confirmation's bootstrap over test images resamples."""
    logits, labels = _logits(model, data, "test", runtime), data.split("test")[1]
    right = hits(logits.cpu(), labels).numpy()
    return {"test_top1": score(logits, labels), "test_hits": pack(right), "test_images": len(right)}


def _logits(model: torch.nn.Module, data: PreparedData, split: str, runtime: Runtime) -> torch.Tensor:
    return predict_logits(place_model(model, runtime), eval_loader(data, split, runtime))


def corrupted_top1(model: torch.nn.Module, data: PreparedData, cfg: ValidateConfig, runtime: Runtime) -> dict[str, Any]:
    """The model on the corruption suite of the test split (``validate.corruptions``, ``corruption_seed``):
    what the study's robustness comparison reads."""
    if cfg.corruptions == "none":
        return {}
    images, labels = data.eval_split("test")
    model = place_model(model, runtime)
    robust, _ = robustness.measure(
        {"model": lambda imgs: predict_logits(model, images_loader(imgs, data, runtime))},
        images,
        labels,
        cfg.corruptions,
        cfg.corruption_seed,
    )
    cells = robust["model"].cells
    return {
        "test_corrupted_top1": robust["model"].corrupted,
        "test_corruptions": {f"{name}_s{s}": acc for name, by_s in cells.items() for s, acc in by_s.items()},
    }


def int8_top1(model: torch.nn.Module, data: PreparedData, params: Params, directory: Path) -> dict[str, Any]:
    """The student's test top-1 as ONNX static int8 (exported to ``directory``, calibrated as validate does): the
    accuracy cost of the last compression step."""
    if not params.export.enabled:
        return {}
    m = data.manifest
    fp32 = export.to_onnx(
        model.cpu().eval(),
        m["mean"],
        m["std"],
        input_shape(m),
        directory / "student.onnx",
        "student",
        params.export.opset,
    )
    return {"test_int8_top1": measure_int8(params, data, fp32, directory / "student_int8.onnx", "test").top1}
