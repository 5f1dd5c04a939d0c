"""What validate_student leaves behind: the measured figures, the verdict, the report and the figures.

The files are the contract with later steps and with Kubeflow: ``metrics.json`` (scalars),
``details.json`` (with the confusion matrix), ``decision.json`` (the thresholds' verdict and the
hashes promote checks), ``predictions.pt`` (the paired test predictions the McNemar gate reads),
``report.md`` and ``confusion_matrix.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdpipe import plots, report, tags
from kdpipe.champion import ChampionScore
from kdpipe.evaluate import scalars
from kdpipe.files import (
    CONFUSION_FILE,
    DECISION_FILE,
    DETAILS_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    REPORT_FILE,
    atomic_torch_save,
    atomic_write_text,
    write_json,
)


@dataclass(frozen=True)
class Measured:
    """Teacher, student and (when comparable) champion on the same test split."""

    student: dict[str, Any]
    teacher: dict[str, Any]
    champion: dict[str, Any] | None
    student_logits: torch.Tensor
    teacher_logits: torch.Tensor
    labels: torch.Tensor
    classes: list[str]


def write(out: Path, m: Measured, champ: ChampionScore, decision: dict[str, Any], *, data_sha256: str,
          model_sha256: str, lineage: dict[str, str], student_arch: str) -> list[Path]:
    """Write every file of the validation into ``out``; returns those to log as run artifacts."""
    write_json(out / METRICS_FILE, summary(m, decision))
    write_json(out / DETAILS_FILE, {"student": m.student, "teacher": m.teacher, "champion": m.champion,
                                    "classes": m.classes})
    write_json(out / DECISION_FILE, {**decision, "data_sha256": data_sha256, "model_sha256": model_sha256,
                                     "champion": {"version": champ.version, "note": champ.note,
                                                  "top1": m.champion["top1"] if m.champion else None}})
    predictions: dict[str, Any] = {"student": m.student_logits.argmax(1), "teacher": m.teacher_logits.argmax(1),
                                   "labels": m.labels}
    if champ.logits is not None:
        predictions.update(champion=champ.logits.argmax(1), champion_version=champ.version)
    atomic_torch_save(predictions, out / PREDICTIONS_FILE)
    atomic_write_text(out / REPORT_FILE, report.render(
        {**m.teacher, "arch": lineage.get(tags.TEACHER_ARCH, "?")}, {**m.student, "arch": student_arch},
        m.champion, decision, lineage, champ.note))
    plots.confusion_matrix(m.student["confusion_matrix"], m.classes, out / CONFUSION_FILE,
                           f"student {student_arch}, test top-1 {m.student['top1']:.2%}")
    return [out / name for name in (METRICS_FILE, DECISION_FILE, DETAILS_FILE, REPORT_FILE, CONFUSION_FILE)]


def summary(m: Measured, decision: dict[str, Any]) -> dict[str, Any]:
    """The step's result: each model's scalars and whether the thresholds passed."""
    return {"student": scalars(m.student), "teacher": scalars(m.teacher), "passed": decision["passed"],
            "champion": scalars(m.champion) if m.champion else None}
