"""What validate measures for deployment: the ONNX files, their parity with eager, and the cost table.

The student goes to ONNX fp32 (which must reproduce eager PyTorch, or the step fails) and to static
int8 (offered for deployment only while its top-1 on the gate split trails fp32's by at most
``export.max_int8_drop``); the teacher goes to ONNX fp32 so that the cost table compares like with
like. Every model and format is then probed the same way in a fresh process
(:mod:`kdpipe.deploy.cost_probe`): batch-1 latency p50 and p95, throughput, memory and file size, at
``export.threads`` threads. The gate reads the student's figures in ``validate.deploy_format``: the median of
``export.latency_probes`` probes, probed again before a limit refuses it (:mod:`kdpipe_probe.settle`); with
``validate.device_profile``, the latency as estimated on that device (:mod:`kdpipe.deploy.device_profile`).

The teacher's figures only feed the cost table, and a teacher a team brings may not go where kdpipe's own
does (torch.onnx cannot trace TorchScript; a module may use an op ONNX lacks): a teacher figure that cannot be
measured is recorded as not measured, with a one-line reason, and validate goes on. Its eager figures are
probed on the teacher as stored (:mod:`kdpipe.teacher.stored`), read the way every step reads it.
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any

import torch
from kdpipe_probe.settle import settle

from kdpipe.config import ExportConfig, Params
from kdpipe.data.prepared import PreparedData
from kdpipe.deploy import cost_probe, onnx_metadata, openvino_export
from kdpipe.deploy import onnx as export
from kdpipe.deploy import openvino as ov
from kdpipe.deploy.deployment_record import Deployment
from kdpipe.deploy.device_profile import DeviceProfile
from kdpipe.deploy.int8 import int8_verdict, measure_int8
from kdpipe.infra.errors import KdpipeError
from kdpipe.infra.files import ONNX_FILES
from kdpipe.models.file import MODEL_FILE
from kdpipe.models.serving import ServingClassifier, SlicedImages, predict_unit_images
from kdpipe.models.top1 import top1
from kdpipe.teacher import stored
from kdpipe.tracking import tags

log = logging.getLogger("kdpipe")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def input_shape(manifest: dict[str, Any]) -> tuple[int, int, int]:
    """(channels, height, width) of the prepared data: every exported model's input after the batch axis."""
    channels, height, width = (int(s) for s in manifest["shape"])
    return channels, height, width


def _fp32(
    who: str,
    net: torch.nn.Module,
    m: dict[str, Any],
    path: Path,
    images: SlicedImages,
    labels: torch.Tensor,
    split: str,
    cfg: ExportConfig,
    props: dict[str, str],
) -> tuple[dict[str, float], dict[str, float]]:
    """Export ``net`` (a copy, on the CPU) with ``props`` in its metadata and check it against eager on ``images``:
    (parity, top-1 by format)."""
    net = copy.deepcopy(net).cpu().eval()
    export.to_onnx(net, m["mean"], m["std"], input_shape(m), path, who, cfg.opset)
    onnx_metadata.stamp(path, props)
    eager = predict_unit_images(ServingClassifier(net, m["mean"], m["std"]).eval(), images)
    onnx = export.onnx_logits(export.session(path, cfg.threads), images)
    parity = export.parity(eager, onnx)
    if who == "student":  # what is deployed must match what was validated
        export.check_parity(parity, f"{who} on the {split} split")
    elif not export.parity_holds(parity):  # the teacher's export only feeds the cost table
        log.warning(
            "export: the teacher's ONNX fp32 differs from eager on the %s split (%s); its cost figures stand",
            split,
            parity,
        )
    return parity, {"pytorch": top1(eager, labels), "onnx": top1(onnx, labels)}


def _reason(exc: BaseException) -> str:
    """One line of an exception, without the terminal colours torch.onnx puts in its messages."""
    return (_ANSI.sub("", str(exc)).strip().splitlines() or [type(exc).__name__])[0][:300]


def _teacher_fp32(
    net: torch.nn.Module,
    m: dict[str, Any],
    path: Path,
    images: SlicedImages,
    labels: torch.Tensor,
    split: str,
    cfg: ExportConfig,
    props: dict[str, str],
) -> tuple[dict[str, float] | None, dict[str, float], str]:
    """The teacher's :func:`_fp32`, or, where it cannot be exported, (None, its eager top-1, why); a
    ``teacher.onnx`` left from an earlier validate is removed then, so no file stands for another teacher."""
    if any(isinstance(module, torch.jit.ScriptModule) for module in net.modules()):
        reason = "a TorchScript teacher: torch.onnx (through torch.export) cannot trace TorchScript"
    else:
        try:
            return (*_fp32("teacher", net, m, path, images, labels, split, cfg, props), "")
        except Exception as exc:  # torch.export, onnxscript and onnxruntime raise many types; it is only reported
            reason = _reason(exc)
    path.unlink(missing_ok=True)
    eager = predict_unit_images(ServingClassifier(net, m["mean"], m["std"]).eval(), images)
    return None, {"pytorch": top1(eager, labels)}, reason


def _teacher_eager(teacher_dir: Path, trust_pickle: bool) -> tuple[Path, dict[str, Any] | None]:
    """The teacher's file for the eager probe: kdpipe's ``model.pt`` as before, else the payload stored as it came
    and how the probe reads it (:func:`kdpipe.deploy.cost_probe.stored_teacher`)."""
    recorded = stored.read(teacher_dir)
    if recorded is None or recorded.format == stored.KDPIPE:
        return teacher_dir / MODEL_FILE, None
    reading = {
        "format": recorded.format,
        "arch": recorded.arch,
        "trust_pickle": trust_pickle,
        "preprocess": recorded.reading.get("preprocess"),
        "order": recorded.reading.get("order"),
    }
    return teacher_dir / recorded.payload, reading


def _int8(params: Params, data: PreparedData, fp32: Path, path: Path, fp32_top1: float) -> dict[str, Any]:
    """Quantise with ONNX Runtime, measure on the gate split (:func:`measure_int8`), and decide whether int8 is
    offered."""
    int8 = measure_int8(params, data, fp32, path, params.gate.split)
    return int8_verdict(params.export, params.gate.split, fp32_top1, int8.top1, int8.calibration_images, "ONNX")


def _probe(
    cfg: ExportConfig,
    m: dict[str, Any],
    who: str,
    by_format: dict[str, Path],
    accuracy: dict[str, float],
    teacher_reading: dict[str, Any] | None,
    not_measured: dict[str, dict[str, str]],
    gated: tuple[str, float | None] | None = None,
) -> dict[str, dict[str, float]]:
    """``who``'s cost by format (:func:`kdpipe.deploy.cost_probe.measure`) with its top-1; the format of ``gated``
    (format, latency limit) is probed as :func:`kdpipe_probe.settle.settle` says, the others once; a teacher's
    probe that fails is noted in ``not_measured`` (a student's fails the step)."""
    cost = {}
    for fmt, path in by_format.items():

        def probe(fmt: str = fmt, path: Path = path) -> dict[str, float]:
            return cost_probe.measure(
                path,
                fmt,
                input_shape(m),
                threads=cfg.threads,
                batch_size=cfg.batch_size,
                repeats=cfg.repeats,
                warmup=cfg.warmup,
                mean=m["mean"],
                std=m["std"],
                teacher=teacher_reading if who == "teacher" else None,
            )

        try:
            figures = settle(probe, cfg.latency_probes, gated[1]) if gated and gated[0] == fmt else probe()
        except KdpipeError as exc:
            if who == "student":
                raise
            not_measured.setdefault(who, {})[fmt] = _reason(exc)
            continue
        cost[fmt] = {**figures, "top1": accuracy[fmt]}
    return cost


def export_and_measure(
    params: Params,
    data: PreparedData,
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    teacher_lineage: dict[str, str],
    profile: DeviceProfile | None = None,
) -> Deployment:
    """Export into ``paths.validation`` (``student.onnx``, ``student_int8.onnx``, ``teacher.onnx``, each with its
    metadata: :mod:`kdpipe.deploy.onnx_metadata`), check parity on the gate split, quantise, probe the cost; a
    teacher figure that cannot be had is recorded as not measured, with why. With ``profile``, the latency limit
    is read on that device, so the pod's probe is settled against the limit divided by its ratio."""
    cfg, m, out, split = params.export, data.manifest, Path(params.paths.validation), params.gate.split
    files = {name: out / filename for name, filename in ONNX_FILES.items()}
    images, labels = data.eval_split(split)
    props = onnx_metadata.export_props(m, cfg.opset, "fp32", teacher_lineage)
    parity, accuracy, not_measured = {}, {}, {}
    parity["student"], accuracy["student"] = _fp32(
        "student", student, m, files["student_onnx"], images, labels, split, cfg, props
    )
    teacher_parity, accuracy["teacher"], why = _teacher_fp32(
        teacher, m, files["teacher_onnx"], images, labels, split, cfg, props
    )
    if teacher_parity is None:
        not_measured["teacher"] = {"onnx": f"not exported to ONNX ({why})"}
        del files["teacher_onnx"]
    else:
        parity["teacher"] = teacher_parity
    int8 = _int8(params, data, files["student_onnx"], files["student_int8_onnx"], accuracy["student"]["onnx"])
    onnx_metadata.stamp(files["student_int8_onnx"], {**props, tags.PRECISION: "int8"})
    accuracy["student"]["onnx_int8"] = int8["int8_top1"]
    openvino = None
    if "openvino" in cfg.formats:
        try:
            openvino = openvino_export.measure(params, data, student, files["student_onnx"], props)
        except ov.FormatUnavailable as exc:
            if params.validate_.deploy_format.startswith("openvino"):
                raise
            log.warning("export: OpenVINO is skipped: %s", exc)
            not_measured.setdefault("student", {}).update(dict.fromkeys(ov.OPENVINO_FORMATS, _reason(exc)))
    if openvino is not None:
        files.update(openvino.files)
        parity["student_openvino"] = openvino.parity
        accuracy["student"].update(openvino.accuracy)
    teacher_file, teacher_reading = _teacher_eager(Path(params.paths.teacher), params.teacher.trust_pickle)
    sources = {
        "student": {
            "pytorch": Path(params.paths.student) / MODEL_FILE,
            "onnx": files["student_onnx"],
            "onnx_int8": files["student_int8_onnx"],
            **(
                {"openvino": files["student_openvino"], "openvino_int8": files["student_openvino_int8"]}
                if openvino
                else {}
            ),
        },
        "teacher": {"pytorch": teacher_file, **({"onnx": files["teacher_onnx"]} if teacher_parity else {})},
    }
    limit = params.validate_.max_latency_ms
    gated = (params.validate_.deploy_format, limit / profile.ratio if profile and limit is not None else limit)
    cost = {
        who: _probe(
            cfg, m, who, by_format, accuracy[who], teacher_reading, not_measured, gated if who == "student" else None
        )
        for who, by_format in sources.items()
    }
    for who, by_format in not_measured.items():
        for fmt, reason in by_format.items():
            log.warning("export: the %s's %s cost is not measured: %s", who, fmt, reason)
    log.info(
        "export: student fp32 parity %.2f%% (max |dlogit| %.1e), int8 top-1 %.4f (drop %.4f)%s",
        100 * parity["student"]["top1_agreement"],
        parity["student"]["max_abs_logit_diff"],
        int8["int8_top1"],
        int8["drop"],
        "" if int8["offered"] else "; int8 not offered",
    )
    return Deployment(
        files,
        parity,
        int8,
        cost,
        params.validate_.deploy_format,
        cfg.threads,
        cfg.batch_size,
        not_measured,
        openvino.int8 if openvino else {},
        profile,
    )
