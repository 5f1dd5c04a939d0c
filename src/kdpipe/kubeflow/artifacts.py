"""Step results as Kubeflow artifacts the UI can show: scalars, the confusion matrix, the report.

The steps return their results and write plain JSON files; this module turns both into kfp's Metrics,
ClassificationMetrics, Model metadata and a Markdown run report, duck-typed so it needs no kfp.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from kdpipe.config import Params
from kdpipe.data.prepared import MANIFEST_FILE
from kdpipe.infra.files import (
    DECISION_FILE,
    DETAILS_FILE,
    METRICS_FILE,
    TEACHER_DESCRIPTOR_FILE,
    atomic_write_text,
    read_json,
)
from kdpipe.models.file import MODEL_FILE, load_model
from kdpipe.promotion.decision import Decision
from kdpipe.promotion.records import PromotionRecord
from kdpipe.tracking import tags, ui_links
from kdpipe.tracking.server import check_tracking


class MetricsLike(Protocol):
    def log_metric(self, metric: str, value: float) -> None: ...


class ConfusionLike(Protocol):
    def log_confusion_matrix(self, categories: list[str], matrix: list[list[int]]) -> None: ...


class ArtifactLike(Protocol):
    path: str
    metadata: dict[str, Any]


class ValidationLike(Protocol):
    """What validate_student returns (:class:`kdpipe.evaluation.validation_metrics.ValidationMetrics`), by the
    attributes read here: each model's test figures, the operational sets (``num_samples`` and each model's
    figures), whether the thresholds passed, and its JSON."""

    @property
    def passed(self) -> bool: ...

    @property
    def teacher(self) -> dict[str, Any]: ...

    @property
    def student(self) -> dict[str, Any]: ...

    @property
    def operational(self) -> Mapping[str, Any]: ...

    def to_dict(self) -> dict[str, Any]: ...


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def log_scalars(metrics: MetricsLike, values: dict[str, Any], prefix: str = "") -> None:
    """Every finite number in ``values`` (nested dicts flattened with dots) as a Kubeflow metric."""
    for key, value in values.items():
        if isinstance(value, dict):
            log_scalars(metrics, value, f"{prefix}{key}.")
        elif _number(value):
            metrics.log_metric(f"{prefix}{key}", float(value))


def _described(directory: Path) -> dict[str, Any]:
    """What a model directory says of itself: a ``model.pt``'s record, or for a teacher stored in its own form
    (TorchScript, pt2, a state dict, an MLflow model) its descriptor."""
    if not (directory / MODEL_FILE).exists() and (directory / TEACHER_DESCRIPTOR_FILE).exists():
        stored = read_json(directory / TEACHER_DESCRIPTOR_FILE)
        keys = ("format", "source", "version", "sha256", "feature_layer", "classes", "in_channels")
        return {"arch": stored["arch"] or stored["format"], **{key: stored[key] for key in keys}}
    _, record = load_model(directory / MODEL_FILE)
    meta = record.get("meta", {})
    return {
        "file": MODEL_FILE,
        "arch": record["arch"],
        "classes": list(record["classes"]),
        "in_channels": int(record["in_channels"]),
        **{k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))},
    }


def describe_model(model: ArtifactLike, **extra: Any) -> None:
    """Model metadata the Kubeflow UI lists: the file or format, framework, architecture, classes, data; ``extra``
    keys whose value is None are left out (Kubeflow's metadata takes no nulls)."""
    model.metadata.update(
        {
            "framework": "pytorch",
            **_described(Path(model.path)),
            **{k: v for k, v in extra.items() if v is not None},
        }
    )


def record_exports(validation_dir: Path, onnx_model: ArtifactLike, onnx_int8_model: ArtifactLike) -> None:
    """The student's ONNX fp32 and int8 files as Model artifacts, with their parity, cost and (int8) whether
    it is offered; with the export off, both say so in their metadata and hold no file."""
    deployed = read_json(validation_dir / METRICS_FILE).get("deployment")
    for artifact, fmt, name in (
        (onnx_model, "onnx", "student_onnx"),
        (onnx_int8_model, "onnx_int8", "student_int8_onnx"),
    ):
        if not deployed:
            artifact.metadata.update({"exported": False, "why": "export.enabled is false"})
            continue
        Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(validation_dir / deployed["files"][name], artifact.path)
        artifact.metadata.update(
            {
                "exported": True,
                "framework": "onnx",
                "format": fmt,
                "input": "float32 NCHW in [0, 1]",
                **{f"cost_{k}": v for k, v in deployed["cost"]["student"][fmt].items()},
            }
        )
    if deployed:
        onnx_model.metadata.update({f"parity_{k}": v for k, v in deployed["parity"]["student"].items()})
        onnx_int8_model.metadata.update(
            {
                "offered": deployed["int8"]["offered"],
                "int8_top1_drop": deployed["int8"]["drop"],
                "why_not_offered": deployed["int8"]["reason"],
            }
        )


def log_confusion(confusion: ConfusionLike, details_path: Path) -> None:
    """The student's test confusion matrix (rows: true class, columns: predicted)."""
    details = read_json(details_path)
    confusion.log_confusion_matrix(list(details["classes"]), details["student"]["confusion_matrix"])


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if _number(value) else "n/a"


def run_report(
    manifest: dict[str, Any],
    distilled: dict[str, Any],
    validation: ValidationLike,
    decision: Decision,
    mlflow_links: Sequence[str] = (),
) -> str:
    """The Markdown summary of one pipeline run: data, teacher and student, the verdict, links to MLflow."""
    teacher, student = validation.teacher, validation.student
    rows = [
        ("test top-1", "top1", ".2%"),
        ("test top-5", "top5", ".2%"),
        ("calibration error (ECE)", "ece", ".4f"),
        ("agreement with the teacher", "teacher_agreement", ".2%"),
        ("parameters", "parameters", ","),
        ("latency per image, batch 1 (ms)", "latency_ms_batch1", ".2f"),
    ]
    lines = [
        "# kdpipe run report",
        "",
        f"Data: `{manifest['source']}`, sha256 `{manifest['sha256'][:16]}`, splits "
        + ", ".join(f"{k} {v:,}" for k, v in manifest["splits"].items()),
        "",
        f"Distillation: method `{distilled.get('method')}`, {distilled.get('epochs')} epochs, "
        f"final validation accuracy {_fmt(distilled.get('final_val_acc'), '.2%')}",
        "",
        "| | teacher | student |",
        "|---|---|---|",
        *(
            f"| {label} | {_fmt(teacher.get(key), spec)} | {_fmt(student.get(key), spec)} |"
            for label, key, spec in rows
        ),
        *(
            f"| top-1 on operational set {name} ({f.num_samples:,} images) | "
            f"{_fmt(f.teacher.get('top1'), '.2%')} | "
            f"{_fmt(f.student.get('top1'), '.2%')} |"
            for name, f in validation.operational.items()
        ),
        "",
        "**Validation passed**: the student goes on to promotion."
        if decision.passed
        else "**Validation failed**, the student is not promoted:",
        *(f"- {reason}" for reason in decision.reasons),
        "",
        *(f"{line}\n" for line in mlflow_links),
    ]
    return "\n".join(lines)


def _mlflow_links(params: Params) -> list[str]:
    """Where this pipeline run's MLflow runs and the registered student are, opening the training view."""
    if not params.tracking.enabled:
        return []
    experiment_id = str(check_tracking(params))
    return [
        f"MLflow: [the experiment's training runs]({ui_links.experiment(params, experiment_id)}) (this pipeline run: "
        f"search `tags.{tags.PIPELINE_RUN_ID} = '{params.tracking.pipeline_run_id}'`), "
        f"[the registered student]({ui_links.registered_model(params, params.tracking.registered_model)})"
    ]


def write_run_report(
    path: Path,
    dataset_dir: Path,
    student_dir: Path,
    validation: ValidationLike,
    validation_dir: Path,
    mlflow_links: Sequence[str] = (),
) -> None:
    """The run report from the validation and the files the steps wrote (every Dataset artifact holds the
    manifest)."""
    text = run_report(
        read_json(dataset_dir / MANIFEST_FILE),
        read_json(student_dir / METRICS_FILE),
        validation,
        Decision.from_dict(read_json(validation_dir / DECISION_FILE)),
        mlflow_links,
    )
    atomic_write_text(path, text)


def record_validation(
    result: ValidationLike,
    params: Params,
    metrics: MetricsLike,
    confusion: ConfusionLike,
    report: ArtifactLike,
    validation: ArtifactLike,
    dataset: ArtifactLike,
    student: ArtifactLike,
    exports: tuple[ArtifactLike, ArtifactLike],
) -> bool:
    """The validation as the Kubeflow UI shows it: scalars, confusion matrix, run report with MLflow links, the
    ONNX fp32 and int8 Model artifacts (``exports``), verdict."""
    record_exports(Path(validation.path), *exports)
    log_scalars(metrics, result.to_dict())
    log_confusion(confusion, Path(validation.path) / DETAILS_FILE)
    write_run_report(
        Path(report.path), Path(dataset.path), Path(student.path), result, Path(validation.path), _mlflow_links(params)
    )
    validation.metadata["passed"] = bool(result.passed)
    return bool(result.passed)


def record_promotion(record: PromotionRecord, promotion: ArtifactLike) -> bool:
    """The promotion record's plain fields as the artifact's metadata; returns whether the student was promoted."""
    promotion.metadata.update({k: v for k, v in record.to_dict().items() if isinstance(v, (str, int, float, bool))})
    return bool(record.promoted)
