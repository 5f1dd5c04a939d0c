"""The student as OpenVINO IR fp32 and int8, measured as validate measures its ONNX files.

fp32 must reproduce eager PyTorch on the gate split by the ONNX rule (:func:`kdpipe.deploy.onnx.parity_holds`:
100 % top-1 agreement, max |Δlogit| ≤ 1e-4; OpenVINO in f32 measured 9.5e-7 on the test student), or validate
fails; int8 is offered only within ``export.max_int8_drop`` of fp32 (:func:`kdpipe.deploy.int8.int8_verdict`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdpipe.config import Params
from kdpipe.data.prepared import PreparedData
from kdpipe.deploy import onnx as export
from kdpipe.deploy import openvino as ov
from kdpipe.deploy.int8 import calibration_images, int8_verdict
from kdpipe.infra.files import OPENVINO_FILES
from kdpipe.models.serving import ServingClassifier, predict_unit_images
from kdpipe.models.top1 import top1


@dataclass(frozen=True)
class OpenVinoResult:
    """The student's OpenVINO IR: its files, fp32 parity with eager, top-1 by format and the int8 verdict."""

    files: dict[str, Path]
    parity: dict[str, float]
    accuracy: dict[str, float]
    int8: dict[str, Any]


def measure(
    params: Params, data: PreparedData, student: torch.nn.Module, onnx_fp32: Path, props: dict[str, str]
) -> OpenVinoResult:
    """The validated ONNX fp32 as OpenVINO IR fp32 (parity with eager required, as ONNX's) and NNCF int8, each
    measured on the gate split (:mod:`kdpipe.deploy.openvino`)."""
    cfg, m, split = params.export, data.manifest, params.gate.split
    out = Path(params.paths.validation)
    files = {name: out / filename for name, filename in OPENVINO_FILES.items()}
    images, labels = data.eval_split(split)
    ov.from_onnx(onnx_fp32, files["student_openvino"], props)
    net = copy.deepcopy(student).cpu().eval()
    eager = predict_unit_images(ServingClassifier(net, m["mean"], m["std"]).eval(), images)
    fp32 = ov.logits(ov.compiled(files["student_openvino"], cfg.threads), images)
    parity = export.parity(eager, fp32)
    export.check_parity(parity, f"student on the {split} split", "OpenVINO fp32")
    calibration = calibration_images(params, data)
    ov.quantize_int8(files["student_openvino"], calibration, files["student_openvino_int8"], "student")
    int8 = ov.logits(ov.compiled(files["student_openvino_int8"], cfg.threads), images)
    accuracy = {"openvino": top1(fp32, labels), "openvino_int8": top1(int8, labels)}
    verdict = int8_verdict(cfg, split, accuracy["openvino"], accuracy["openvino_int8"], len(calibration), "OpenVINO")
    return OpenVinoResult(files, parity, accuracy, verdict)
