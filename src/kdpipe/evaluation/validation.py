"""What validate_student leaves behind: the measured figures, the verdict, the report and the figures.

The files are the contract with later steps and with Kubeflow: ``metrics.json`` (scalars),
``details.json`` (with the confusion matrices, per model, per split and per operational set),
``decision.json`` (the thresholds' verdict and the hashes promote checks), ``predictions.pt`` (the
paired gate-split predictions the McNemar gate reads), ``report.md``, ``confusion_matrix.png`` and
``corruption_heatmap.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdpipe.config import Params, ValidateConfig
from kdpipe.data.model_images import parts
from kdpipe.data.operational import OperationalSet
from kdpipe.data.prepared import PreparedData
from kdpipe.deploy.deployment_record import Deployment
from kdpipe.evaluation import plots, report, robustness
from kdpipe.evaluation.metrics import classification_metrics, inference_cost, predict_logits, scalars, top1
from kdpipe.evaluation.validation_metrics import GateFigures, SetFigures, ValidationMetrics
from kdpipe.infra.files import (
    CONFUSION_FILE,
    CORRUPTION_HEATMAP_FILE,
    DECISION_FILE,
    DETAILS_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    REPORT_FILE,
    atomic_torch_save,
    atomic_write_text,
    write_json,
)
from kdpipe.models.serving import predict_unit_images
from kdpipe.promotion.champion import ChampionScore
from kdpipe.promotion.decision import ChampionSeen, Decision
from kdpipe.promotion.gate import decide_thresholds
from kdpipe.tracking import tags
from kdpipe.training.runtime import Runtime, eval_loader, images_loader


@dataclass(frozen=True)
class Measured:
    """Teacher, student and (when compared) champion: reported on the test split, decided on the gate split.

    ``gate`` holds, per model, the figures the decisions read (top-1 and the corruption suite on
    ``gate.split``) and, when the champion was measured, the data and number of images it was compared on;
    ``gate_predictions`` the paired predictions there (McNemar, per-class recall).
    """

    student: dict[str, Any]
    teacher: dict[str, Any]
    champion: dict[str, Any] | None
    labels: torch.Tensor
    classes: list[str]
    champ: ChampionScore
    robust: dict[str, robustness.Robustness]
    corruption_note: str
    gate: dict[str, Any]
    gate_predictions: dict[str, Any]
    operational: dict[str, dict[str, Any]]
    deployment: Deployment | None


def _operational(
    field: OperationalSet,
    predictors: dict[str, robustness.Predict],
    reference: dict[str, torch.Tensor],
    manifest: dict[str, Any],
) -> dict[str, Any]:
    """One operational set measured like the test split, plus its shift from the training data."""
    logits = {who: predict(field.images) for who, predict in predictors.items()}
    labels, t_logits = field.labels, logits["teacher"]
    figures = {
        who: classification_metrics(out, labels, None if who == "teacher" else t_logits) for who, out in logits.items()
    }
    return {
        "source": field.source,
        "kind": field.kind,
        "num_samples": len(labels),
        "sha256": field.digest,
        **figures,
        "shift": robustness.shift(field.images, manifest["mean"], manifest["std"], logits, reference),
    }


def measure(
    params: Params,
    data: PreparedData,
    runtime: Runtime,
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    champ: ChampionScore,
    fields: list[OperationalSet],
    deployment: Deployment | None,
) -> Measured:
    """Every figure the validation reports (test split, operational sets) and decides on (``gate.split``),
    the corruption suite included."""
    labels, split = data.split("test")[1], params.gate.split
    shape, loader = tuple(data.manifest["shape"]), eval_loader(data, "test", runtime)
    t_logits, s_logits = predict_logits(teacher, loader), predict_logits(student, loader)
    predictors: dict[str, robustness.Predict] = {
        who: (lambda imgs, model=model: predict_logits(model, images_loader(imgs, data, runtime)))
        for who, model in (("teacher", teacher), ("student", student))
    }
    if champ.module is not None and champ.logits is not None:
        predictors["champion"] = lambda imgs: predict_unit_images(champ.module, imgs, params.runtime.eval_batch_size)
    g_images, g_labels = data.eval_split(split)
    g_logits = {who: torch.cat([predict(p) for p in parts(g_images)]) for who, predict in predictors.items()}
    cfg = params.validate_
    robust, seconds = (
        robustness.measure(predictors, g_images, g_labels, cfg.corruptions, cfg.corruption_seed)
        if cfg.corruptions != "none"
        else ({}, 0.0)
    )
    note = (
        "not measured (validate.corruptions: none)"
        if not robust
        else (
            f"{cfg.corruptions}: {len(robust['student'].cells)} corruptions at severities "
            f"{', '.join(map(str, robustness.MODES[cfg.corruptions]))} on the {len(g_labels):,} {split} images, seed "
            f"{cfg.corruption_seed}; {seconds:.1f} s"
        )
    )
    gate: dict[str, Any] = {"split": split, "champion": None}
    for who, logits in g_logits.items():
        gate[who] = {
            "top1": top1(logits, g_labels),
            **(robustness.metrics(robust[who], robust["teacher"]) if who in robust else {}),
        }
    if "champion" in g_logits:  # the data and images the champion was compared on, and those it was validated on
        gate["champion_compared_on"] = {
            "data_sha256": data.sha256,
            "images": len(g_labels),
            "champion_validated_on": champ.data_sha256,
        }
    student_m = {**classification_metrics(s_logits, labels, t_logits), **inference_cost(student, shape, runtime.device)}
    teacher_m = {**classification_metrics(t_logits, labels), **inference_cost(teacher, shape, runtime.device)}
    champion_m = (
        None
        if champ.logits is None
        else {
            **classification_metrics(champ.logits, labels, t_logits),
            "label": f"v{champ.version}",
            **champ.recorded(),
        }
    )
    predictions = {**{who: logits.argmax(1) for who, logits in g_logits.items()}, "labels": g_labels, "split": split}
    operational = {field.name: _operational(field, predictors, g_logits, data.manifest) for field in fields}
    return Measured(
        student_m,
        teacher_m,
        champion_m,
        labels,
        data.classes,
        champ,
        robust,
        note,
        gate,
        predictions,
        operational,
        deployment,
    )


def decide(m: Measured, cfg: ValidateConfig, *, data_sha256: str, model_sha256: str) -> Decision:
    """The validate.* thresholds on the gate split's figures, for the student file hashing to ``model_sha256``
    on the data ``data_sha256``; latency and memory are the deploy format's as probed (without an export, the
    eager latency measured in this process, and no memory); with ``validate.device_profile``, the latency as
    estimated on that device."""
    d = m.deployment
    cost = (
        {
            **d.gate_figures(),
            "deploy_format": d.deploy_format,
            "deploy_refused": d.deploy_refused(),
        }
        if d
        else {"latency_ms_batch1": m.student["latency_ms_batch1"], "deploy_format": "pytorch"}
    )
    thresholds = decide_thresholds(
        {**m.gate["student"], **cost},
        m.gate["teacher"],
        cfg,
        {name: figures["student"]["top1"] for name, figures in m.operational.items()},
    )
    champion = ChampionSeen(m.champ.version, m.champ.note, (m.gate["champion"] or {}).get("top1"))
    corrupted_top1 = m.gate["student"].get("corrupted_top1")
    return Decision(thresholds, m.gate["split"], data_sha256, model_sha256, corrupted_top1, champion)


def write(out: Path, m: Measured, decision: Decision, *, lineage: dict[str, str], student_arch: str) -> list[Path]:
    """Write every file of the validation into ``out``; returns those to log as run artifacts."""
    write_json(out / METRICS_FILE, summary(m, decision).to_dict())
    write_json(
        out / DETAILS_FILE,
        {
            "student": m.student,
            "teacher": m.teacher,
            "champion": m.champion,
            "gate": m.gate,
            "operational": m.operational,
            "classes": m.classes,
            "deployment": m.deployment.as_dict() if m.deployment else None,
        },
    )
    write_json(out / DECISION_FILE, decision.to_dict())
    predictions = dict(m.gate_predictions)
    if "champion" in predictions:
        predictions.update(
            champion_version=m.champ.version, champion_corrupted_top1=m.gate["champion"].get("corrupted_top1")
        )
    atomic_torch_save(predictions, out / PREDICTIONS_FILE)
    atomic_write_text(
        out / REPORT_FILE,
        report.render(
            {**m.teacher, "arch": lineage.get(tags.TEACHER_ARCH, "?")},
            {**m.student, "arch": student_arch},
            m.champion,
            decision,
            lineage,
            m.champ.note,
            m.corruption_note,
            m.gate,
            m.operational,
            m.deployment.as_dict() if m.deployment else None,
        ),
    )
    plots.confusion_matrix(
        m.student["confusion_matrix"],
        m.classes,
        out / CONFUSION_FILE,
        f"student {student_arch}, test top-1 {m.student['top1']:.2%}",
    )
    written = [out / name for name in (METRICS_FILE, DECISION_FILE, DETAILS_FILE, REPORT_FILE, CONFUSION_FILE)]
    written += list(m.deployment.files.values()) if m.deployment else []
    (out / CORRUPTION_HEATMAP_FILE).unlink(missing_ok=True)
    if m.robust:
        written.append(
            plots.corruption_heatmap(
                m.robust["student"].cells,
                m.robust["teacher"].cells,
                out / CORRUPTION_HEATMAP_FILE,
                f"student {student_arch} - teacher, {m.gate['split']} split",
            )
        )
    return written


def summary(m: Measured, decision: Decision) -> ValidationMetrics:
    """The step's result: each model's test scalars, the gate split's figures, and whether the thresholds passed."""

    def some(figures: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if figures is None else scalars(figures)

    def field(f: dict[str, Any]) -> SetFigures:
        figures = [scalars(f["teacher"]), scalars(f["student"]), some(f.get("champion")), scalars(f["shift"])]
        return SetFigures(f["source"], f["kind"], f["num_samples"], f["sha256"], *figures)

    g = m.gate
    return ValidationMetrics(
        student=scalars(m.student),
        teacher=scalars(m.teacher),
        champion=scalars(m.champion) if m.champion else None,
        gate=GateFigures(g["split"], scalars(g["teacher"]), scalars(g["student"]), some(g["champion"])),
        passed=decision.passed,
        corruptions=m.corruption_note,
        operational={name: field(f) for name, f in m.operational.items()},
        deployment=m.deployment.as_dict() if m.deployment else None,
    )
