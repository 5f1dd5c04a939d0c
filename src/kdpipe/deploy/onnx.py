"""ONNX export of a classifier, fp32 and static int8, and its parity with eager PyTorch.

The exported graph takes what the MLflow model takes: float32 ``N x C x H x W`` images in [0, 1],
any batch size; the training data's normalisation is baked in (:class:`kdpipe.models.serving.ServingClassifier`).
Export goes through ``torch.onnx.export(dynamo=True)`` (``torch.export`` then onnxscript). int8 is
ONNX Runtime's *static* quantisation in QDQ format, per channel, calibrated on a fixed sample of the
transfer set: dynamic quantisation leaves convolutions in float, and they are most of the work.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdpipe.infra.errors import KdpipeError
from kdpipe.models.serving import ServingClassifier, SlicedImages

INPUT, OUTPUT = "images", "logits"
EXPORTER_LOGGERS = ("onnxscript", "onnx_ir")
"""The exporter's optimiser narrates each of its passes at INFO: a process that logs kdpipe's INFO sets
these to WARNING."""
MAX_ABS_LOGIT_DIFF = 1e-4  # fp32 parity: above it, or any top-1 disagreement, the export is wrong
_OP = re.compile(r"(aten::[\w.]+|aten\.[\w.]+|torch\.ops\.[\w.]+)")


class ExportError(KdpipeError):
    """A model could not be exported, quantised or run under ONNX Runtime, or its export disagrees with eager."""


def to_onnx(
    net: nn.Module,
    mean: list[float],
    std: list[float],
    in_shape: tuple[int, int, int],
    path: Path,
    what: str,
    opset: int = 18,
) -> Path:
    """Export ``net`` at ``opset`` with the normalisation baked in and a dynamic batch axis; an unsupported op is
    named."""
    model = ServingClassifier(net, mean, std).eval()
    example = torch.rand(2, *in_shape)
    try:
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            opset_version=opset,
            verbose=False,
        )  # verbose=False: no stage-by-stage narration on stdout
    except Exception as exc:  # torch.export and onnxscript raise many types; the op is what a user needs
        found = _OP.search(str(exc))
        op = f"unsupported op {found.group(1)}" if found else f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        raise ExportError(f"{what}: ONNX export failed ({op})") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    program.save(str(partial))
    os.replace(partial, path)
    return path


def session(path: Path, threads: int) -> Any:
    """An ONNX Runtime session on the CPU execution provider with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ExportError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:300]})") from None


def onnx_logits(sess: Any, images: SlicedImages, batch_size: int = 1000) -> torch.Tensor:
    """Logits of an ONNX session for uint8 images, as float32 in [0, 1] (the model's input contract)."""
    outs = [
        sess.run([OUTPUT], {INPUT: images[i : i + batch_size].float().div_(255).numpy()})[0]
        for i in range(0, len(images), batch_size)
    ]
    return torch.from_numpy(np.concatenate(outs)).float()


def parity(eager: torch.Tensor, exported: torch.Tensor) -> dict[str, float]:
    """Top-1 agreement and the largest |logit difference| between eager and exported logits."""
    return {
        "top1_agreement": float((eager.argmax(1) == exported.argmax(1)).float().mean()),
        "max_abs_logit_diff": float((eager - exported).abs().max()),
    }


def parity_holds(figures: dict[str, float]) -> bool:
    """fp32 reproduces eager: 100 % top-1 agreement and |Δlogit| ≤ MAX_ABS_LOGIT_DIFF."""
    return figures["top1_agreement"] == 1.0 and figures["max_abs_logit_diff"] <= MAX_ABS_LOGIT_DIFF


def check_parity(figures: dict[str, float], what: str, export: str = "ONNX fp32") -> None:
    """The deployed model's fp32 ``export`` must reproduce eager (:func:`parity_holds`), or it is an error."""
    if not parity_holds(figures):
        raise ExportError(
            f"{what}: the {export} export disagrees with eager PyTorch (top-1 agreement "
            f"{figures['top1_agreement']:.4%}, max |Δlogit| {figures['max_abs_logit_diff']:.2e} "
            f"> {MAX_ABS_LOGIT_DIFF:g})"
        )


def quantize_int8(fp32: Path, calibration: torch.Tensor, path: Path, what: str, batch_size: int = 64) -> Path:
    """Static QDQ int8 (per-channel weights, int8 activations) calibrated on ``calibration`` (uint8 images)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                calibration[i : i + batch_size].float().div_(255).numpy()
                for i in range(0, len(calibration), batch_size)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT: batch}

    prepared, partial = path.with_name(f".{path.stem}.pre.onnx"), path.with_name(f".{path.name}.partial")
    try:
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(partial),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            # A LayerNorm's scale (a ViT's) has one axis: per channel along it, not along the default axis 1,
            # which it lacks (ONNX Runtime then warns once per norm and falls back to one scale per tensor).
            extra_options={"QDQOpTypePerChannelSupportToAxis": {"LayerNormalization": 0}},
        )
        os.replace(partial, path)
    except Exception as exc:  # onnxruntime.quantization raises many types
        raise ExportError(
            f"{what}: int8 quantisation failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
        ) from None
    finally:
        prepared.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return path
