"""What validate measures for deployment: the ONNX files, their parity with eager, and the cost table.

The student goes to ONNX fp32 (which must reproduce eager PyTorch, or the step fails) and to static
int8 (offered for deployment only while its top-1 on the gate split trails fp32's by at most
``export.max_int8_drop``); the teacher goes to ONNX fp32 so that the cost table compares like with
like. Every model and format is then probed the same way in a fresh process
(:mod:`kdpipe.deploy.cost_probe`): batch-1 latency p50 and p95, throughput, memory and file size, at
``export.threads`` threads. The gate reads the student's figures in ``validate.deploy_format``.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdpipe.config import Params
from kdpipe.data.prepared import PreparedData
from kdpipe.deploy import cost_probe
from kdpipe.deploy import onnx as export
from kdpipe.deploy.int8 import measure_int8
from kdpipe.infra.errors import KdpipeError
from kdpipe.infra.files import METRICS_FILE, ONNX_FILES, file_sha256, read_json
from kdpipe.models.file import MODEL_FILE
from kdpipe.models.serving import ServingClassifier, predict_unit_images
from kdpipe.models.top1 import top1
from kdpipe.tracking import tags

log = logging.getLogger("kdpipe")


@dataclass(frozen=True)
class Deployment:
    """``cost[model][format]``: the probe's figures plus the top-1 on the gate split; ``parity[model]``: fp32
    against eager; ``int8``: the student's int8 and fp32 top-1, the drop, whether int8 is offered and why not."""

    files: dict[str, Path]
    parity: dict[str, dict[str, float]]
    int8: dict[str, Any]
    cost: dict[str, dict[str, dict[str, float]]]
    deploy_format: str
    threads: int
    batch_size: int

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON: what metrics.json, details.json and the Kubeflow Metrics artifact hold."""
        return {
            "deploy_format": self.deploy_format,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "parity": self.parity,
            "int8": self.int8,
            "cost": self.cost,
            "files": {name: path.name for name, path in self.files.items()},
            "sha256": {path.name: file_sha256(path) for path in self.files.values()},
        }

    def gate_figures(self) -> dict[str, float]:
        """The student's latency and memory in the deploy format: what the thresholds read."""
        figures = self.cost["student"][self.deploy_format]
        return {"latency_ms_batch1": figures["p50_ms"], "memory_mb": figures["memory_mb"]}


def registry_files(validation_dir: Path) -> dict[str, Path]:
    """The exported student files a registered version points at, by version tag: fp32 always, int8 only when
    validate offered it; none when validate exported nothing."""
    deployed = read_json(validation_dir / METRICS_FILE).get("deployment")
    if not deployed:
        return {}
    names = {
        tags.ONNX_MODEL_URI: "student_onnx",
        **({tags.ONNX_INT8_MODEL_URI: "student_int8_onnx"} if deployed["int8"]["offered"] else {}),
    }
    found = {tag: validation_dir / deployed["files"][name] for tag, name in names.items()}
    for path in found.values():
        if not path.exists() or file_sha256(path) != deployed["sha256"][path.name]:
            raise KdpipeError(
                f"{path}: missing or changed since validate measured it (a `kdpipe export` since?); "
                "rerun `kdpipe validate` before promoting"
            )
    return found


def input_shape(manifest: dict[str, Any]) -> tuple[int, int, int]:
    """(channels, height, width) of the prepared data: every exported model's input after the batch axis."""
    channels, height, width = (int(s) for s in manifest["shape"])
    return channels, height, width


def _fp32(
    who: str,
    net: torch.nn.Module,
    m: dict[str, Any],
    path: Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    split: str,
    threads: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """Export ``net`` (a copy, on the CPU) and check it against eager on ``images``: (parity, top-1 by format)."""
    net = copy.deepcopy(net).cpu().eval()
    export.to_onnx(net, m["mean"], m["std"], input_shape(m), path, who)
    eager = predict_unit_images(ServingClassifier(net, m["mean"], m["std"]).eval(), images)
    onnx = export.onnx_logits(export.session(path, threads), images)
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


def _int8(params: Params, data: PreparedData, fp32: Path, path: Path, fp32_top1: float) -> dict[str, Any]:
    """Quantise, measure on the gate split (:func:`measure_int8`), and decide whether int8 is offered
    (``export.max_int8_drop``)."""
    cfg, split = params.export, params.gate.split
    int8 = measure_int8(params, data, fp32, path, split)
    drop = fp32_top1 - int8.top1
    offered = drop <= cfg.max_int8_drop
    reason = (
        ""
        if offered
        else (
            f"int8 top-1 {int8.top1:.4f} trails fp32 {fp32_top1:.4f} by {drop:.4f} on the {split} split, "
            f"over export.max_int8_drop {cfg.max_int8_drop:.4f}"
        )
    )
    return {
        "split": split,
        "fp32_top1": fp32_top1,
        "int8_top1": int8.top1,
        "drop": drop,
        "offered": offered,
        "calibration_images": int8.calibration_images,
        "reason": reason,
    }


def export_and_measure(
    params: Params, data: PreparedData, student: torch.nn.Module, teacher: torch.nn.Module
) -> Deployment:
    """Export into ``paths.validation`` (``student.onnx``, ``student_int8.onnx``, ``teacher.onnx``), check
    parity on the gate split, quantise, probe the cost."""
    cfg, m, out, split = params.export, data.manifest, Path(params.paths.validation), params.gate.split
    files = {name: out / filename for name, filename in ONNX_FILES.items()}
    images, labels = data.split(split)
    parity, accuracy = {}, {}
    for who, net in (("student", student), ("teacher", teacher)):
        parity[who], accuracy[who] = _fp32(who, net, m, files[f"{who}_onnx"], images, labels, split, cfg.threads)
    int8 = _int8(params, data, files["student_onnx"], files["student_int8_onnx"], accuracy["student"]["onnx"])
    accuracy["student"]["onnx_int8"] = int8["int8_top1"]
    sources = {
        "student": {
            "pytorch": Path(params.paths.student) / MODEL_FILE,
            "onnx": files["student_onnx"],
            "onnx_int8": files["student_int8_onnx"],
        },
        "teacher": {"pytorch": Path(params.paths.teacher) / MODEL_FILE, "onnx": files["teacher_onnx"]},
    }
    cost = {
        who: {
            fmt: {
                **cost_probe.measure(
                    path,
                    fmt,
                    input_shape(m),
                    threads=cfg.threads,
                    batch_size=cfg.batch_size,
                    repeats=cfg.repeats,
                    warmup=cfg.warmup,
                    mean=m["mean"],
                    std=m["std"],
                ),
                "top1": accuracy[who][fmt],
            }
            for fmt, path in by_format.items()
        }
        for who, by_format in sources.items()
    }
    log.info(
        "export: student fp32 parity %.2f%% (max |dlogit| %.1e), int8 top-1 %.4f (drop %.4f)%s",
        100 * parity["student"]["top1_agreement"],
        parity["student"]["max_abs_logit_diff"],
        int8["int8_top1"],
        int8["drop"],
        "" if int8["offered"] else "; int8 not offered",
    )
    return Deployment(files, parity, int8, cost, params.validate_.deploy_format, cfg.threads, cfg.batch_size)
