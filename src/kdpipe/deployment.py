"""What validate measures for deployment: the ONNX files, their parity with eager, and the cost table.

The student goes to ONNX fp32 (which must reproduce eager PyTorch, or the step fails) and to static
int8 (offered for deployment only while its top-1 on the gate split trails fp32's by at most
``export.max_int8_drop``); the teacher goes to ONNX fp32 so that the cost table compares like with
like. Every model and format is then probed the same way in a fresh process
(:mod:`kdpipe.cost_probe`): batch-1 latency p50 and p95, throughput, memory and file size, at
``export.threads`` threads. The gate reads the student's figures in ``validate.deploy_format``.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdpipe import cost_probe, export, tags
from kdpipe.config import Params
from kdpipe.data.prepared import PreparedData, sample
from kdpipe.files import METRICS_FILE, ONNX_FILES, read_json
from kdpipe.model_file import MODEL_FILE
from kdpipe.serving import ServingClassifier, predict_unit_images

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
        return {"deploy_format": self.deploy_format, "threads": self.threads, "batch_size": self.batch_size,
                "parity": self.parity, "int8": self.int8, "cost": self.cost,
                "files": {name: path.name for name, path in self.files.items()}}

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
    names = {tags.ONNX_MODEL_URI: "student_onnx", **({tags.ONNX_INT8_MODEL_URI: "student_int8_onnx"}
                                                     if deployed["int8"]["offered"] else {})}
    return {tag: validation_dir / deployed["files"][name] for tag, name in names.items()}


def calibration_images(params: Params, data: PreparedData) -> torch.Tensor:
    """A fixed sample of the transfer set (``train.subset`` of the train split, drawn by ``data.seed``)."""
    transfer = sample(*data.split("train"), params.train.subset, params.data.seed)
    return sample(*transfer, params.export.calibration_size, params.data.seed)[0]


def export_and_measure(params: Params, data: PreparedData, student: torch.nn.Module,
                       teacher: torch.nn.Module) -> Deployment:
    """Export into ``paths.validation`` (``student.onnx``, ``student_int8.onnx``, ``teacher.onnx``), check
    parity, probe the cost."""
    cfg, m, out = params.export, data.manifest, Path(params.paths.validation)
    shape = (int(m["shape"][0]), int(m["shape"][1]), int(m["shape"][2]))
    images, labels = data.split(params.gate.split)
    files = {name: out / filename for name, filename in ONNX_FILES.items()}
    parity, top1 = {}, {}
    eager_top1 = {}
    for who, net in (("student", student), ("teacher", teacher)):
        net = copy.deepcopy(net).cpu().eval()
        export.to_onnx(net, m["mean"], m["std"], shape, files[f"{who}_onnx"], f"{who} ({type(net).__name__})")
        eager = predict_unit_images(ServingClassifier(net, m["mean"], m["std"]).eval(), images)
        onnx = export.onnx_logits(export.session(files[f"{who}_onnx"], cfg.threads), images)
        parity[who] = export.parity(eager, onnx)
        export.check_parity(parity[who], f"{who} on the {params.gate.split} split")
        top1[who] = float((onnx.argmax(1) == labels).float().mean())
        eager_top1[who] = float((eager.argmax(1) == labels).float().mean())
    calibration = calibration_images(params, data)
    export.quantize_int8(files["student_onnx"], calibration, files["student_int8_onnx"], "student")
    int8_logits = export.onnx_logits(export.session(files["student_int8_onnx"], cfg.threads), images)
    int8_top1 = float((int8_logits.argmax(1) == labels).float().mean())
    drop = top1["student"] - int8_top1
    offered = drop <= cfg.max_int8_drop
    int8 = {"split": params.gate.split, "fp32_top1": top1["student"], "int8_top1": int8_top1, "drop": drop,
            "offered": offered, "calibration_images": len(calibration),
            "reason": "" if offered else f"int8 top-1 {int8_top1:.4f} trails fp32 {top1['student']:.4f} by {drop:.4f} "
                                         f"on the {params.gate.split} split, over export.max_int8_drop {cfg.max_int8_drop:.4f}"}
    sources = {"student": {"pytorch": Path(params.paths.student) / MODEL_FILE, "onnx": files["student_onnx"],
                           "onnx_int8": files["student_int8_onnx"]},
               "teacher": {"pytorch": Path(params.paths.teacher) / MODEL_FILE, "onnx": files["teacher_onnx"]}}
    accuracy = {"student": {"pytorch": eager_top1["student"], "onnx": top1["student"], "onnx_int8": int8_top1},
                "teacher": {"pytorch": eager_top1["teacher"], "onnx": top1["teacher"]}}
    cost = {who: {fmt: {**cost_probe.measure(path, fmt, shape, threads=cfg.threads, batch_size=cfg.batch_size,
                                             repeats=cfg.repeats, warmup=cfg.warmup, mean=m["mean"], std=m["std"]),
                        "top1": accuracy[who][fmt]}
                  for fmt, path in by_format.items()} for who, by_format in sources.items()}
    log.info("export: student fp32 parity %.2f%% (max |dlogit| %.1e), int8 top-1 %.4f (drop %.4f)%s",
             100 * parity["student"]["top1_agreement"], parity["student"]["max_abs_logit_diff"], int8_top1, drop,
             "" if offered else "; int8 not offered")
    return Deployment(files, parity, int8, cost, params.validate_.deploy_format, cfg.threads, cfg.batch_size)
