"""OpenVINO IR of the student, fp32 and int8, made from its ONNX fp32 export: the runtime of Intel inspection PCs.

fp32 is ``openvino.convert_model`` of the validated ``student.onnx`` (same graph, same baked-in normalisation, same
input contract), saved uncompressed (``compress_to_fp16=False``) and run with ``INFERENCE_PRECISION_HINT=f32``:
without the hint the CPU plugin may run bf16 where the processor has it, and parity would measure the processor.
int8 is NNCF's post-training quantisation of that model, calibrated on the same transfer-set sample as ONNX
Runtime's int8 (:func:`kdpipe.deploy.int8.calibration_images`), with NNCF's full bias correction rather than its
default fast one: on the demo's student (cnn16, 512 calibration images) fast bias correction cost 1.18 top-1
points on val against fp32 and the full one 0.02, so int8 was not offered; chosen on val, then confirmed on the
test split (1.26 against 0.23 points); NNCF's mixed preset did no better (1.28 and -0.02 on val). The ONNX
file's ``kdpipe.*`` metadata rides along in the IR's ``rt_info`` under ``kdpipe``.

openvino and nncf are imported here only: a platform without them gets :class:`FormatUnavailable`, naming them,
and the other formats still run.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdpipe.deploy.onnx import ExportError
from kdpipe.models.serving import SlicedImages
from kdpipe.tracking import tags

OPENVINO_FORMATS = ("openvino", "openvino_int8")
RT_INFO_KEY = "kdpipe"


class FormatUnavailable(ExportError):
    """A deploy format whose runtime is not installed here."""


def runtime() -> Any:
    """The ``openvino`` module, or :class:`FormatUnavailable` naming what to install."""
    try:
        import openvino
    except ImportError as exc:
        raise FormatUnavailable(
            f"OpenVINO is not installed on this platform ({exc}); `pip install openvino nncf`, or leave "
            "openvino out of export.formats"
        ) from None
    return openvino


def _save(model: Any, path: Path) -> Path:
    """``model`` as ``path`` (.xml) and its .bin, written beside under temporary names and moved into place."""
    ov = runtime()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial.xml")
    ov.save_model(model, str(partial), compress_to_fp16=False)
    os.replace(partial.with_suffix(".bin"), path.with_suffix(".bin"))
    os.replace(partial, path)
    return path


def from_onnx(onnx_file: Path, path: Path, props: dict[str, str]) -> Path:
    """The ONNX fp32 export as OpenVINO IR at ``path``, with ``props`` in its rt_info."""
    ov = runtime()
    try:
        model = ov.convert_model(str(onnx_file))
    except Exception as exc:  # OpenVINO's frontends raise their own types
        raise ExportError(f"{onnx_file}: OpenVINO cannot convert it ({str(exc).splitlines()[0][:300]})") from None
    for key, value in props.items():
        model.set_rt_info(value, [RT_INFO_KEY, key])
    return _save(model, path)


def quantize_int8(fp32: Path, calibration: torch.Tensor, path: Path, what: str, batch_size: int = 64) -> Path:
    """NNCF post-training int8 of the IR ``fp32``, calibrated on ``calibration`` (uint8 images)."""
    ov = runtime()
    try:
        import nncf
    except ImportError as exc:
        raise FormatUnavailable(f"NNCF is not installed on this platform ({exc}); `pip install nncf`") from None
    batches = [
        calibration[i : i + batch_size].float().div_(255).numpy() for i in range(0, len(calibration), batch_size)
    ]
    try:
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout holds kdpipe's tables
            # subset_size counts the dataset's items, which are batches here
            model = nncf.quantize(
                ov.Core().read_model(str(fp32)),
                nncf.Dataset(batches),
                subset_size=len(batches),
                fast_bias_correction=False,  # see the module docstring
            )
    except Exception as exc:  # nncf raises many types
        raise ExportError(
            f"{what}: OpenVINO int8 quantisation failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
        ) from None
    model.set_rt_info("int8", [RT_INFO_KEY, tags.PRECISION])
    return _save(model, path)


def compiled(path: Path, threads: int) -> Any:
    """The IR at ``path`` compiled for the CPU at ``threads`` threads, in fp32 arithmetic where the model is fp32."""
    ov = runtime()
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    try:
        return ov.Core().compile_model(str(path), "CPU", config)
    except Exception as exc:  # OpenVINO raises its own types
        raise ExportError(f"{path}: OpenVINO cannot compile it ({str(exc).splitlines()[0][:300]})") from None


def logits(model: Any, images: SlicedImages, batch_size: int = 1000) -> torch.Tensor:
    """Logits of a compiled IR for uint8 images, fed as float32 in [0, 1] (the model's input contract)."""
    outs = [model(images[i : i + batch_size].float().div_(255).numpy())[0] for i in range(0, len(images), batch_size)]
    return torch.from_numpy(np.concatenate(outs)).float()
