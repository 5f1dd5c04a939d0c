"""The validate_student step, and export alone: the student measured beside its teacher and the champion."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.data import operational
from kdpipe.data.prepared import MANIFEST_FILE, load_prepared
from kdpipe.deploy import device_profile
from kdpipe.deploy.deployment import export_and_measure
from kdpipe.evaluation import validation
from kdpipe.evaluation.logged import logged_metrics
from kdpipe.evaluation.validation_metrics import ValidationMetrics
from kdpipe.infra import files
from kdpipe.models.file import MODEL_FILE, load_model
from kdpipe.promotion import champion
from kdpipe.steps.spec import EXPORT, VALIDATE_STUDENT
from kdpipe.steps.tracked import tracked_run
from kdpipe.steps.workdir import claims
from kdpipe.teacher import source as teacher
from kdpipe.tracking import datasets, run_notes, tags
from kdpipe.tracking.lineage import lineage_tags
from kdpipe.tracking.logged_models import logged_student
from kdpipe.training.runtime import make_runtime, place_model

log = logging.getLogger("kdpipe")


@claims(VALIDATE_STUDENT)
def validate_student(params: Params) -> ValidationMetrics:
    """Measure the student beside its teacher and the champion; report the test split, decide on ``gate.split``."""
    runtime = make_runtime(params.runtime)
    source = params.validate_.device_profile
    profile = device_profile.calibrate(params, source) if source else None
    data = load_prepared(params.paths.prepared, expect=params.data.model_dump(), progress_mode=params.runtime.progress)
    model_path = Path(params.paths.student) / MODEL_FILE
    student, _ = load_model(model_path, trained_on=data.sha256)
    fields = operational.load_all(params.validate_.operational, data.manifest, params.runtime.progress)
    teacher_model = place_model(teacher.load(params, data), runtime)
    student = place_model(student, runtime)
    teacher_lineage = teacher.lineage(params)
    lineage = {tags.DATA_SHA256: data.sha256, tags.DEVICE: str(runtime.device), **teacher_lineage}
    if data.split_fingerprint is not None:
        lineage[tags.SPLIT_FINGERPRINT] = data.split_fingerprint
    with tracked_run(params, VALIDATE_STUDENT, lineage) as run:
        exported = (
            export_and_measure(params, data, student, teacher_model, teacher_lineage, profile)
            if params.export.enabled
            else None
        )
        measured = validation.measure(
            params, data, runtime, student, teacher_model, champion.measure(params, data), fields, exported
        )
        student_m, teacher_m, champion_m, champ = measured.student, measured.teacher, measured.champion, measured.champ
        decision = validation.decide(
            measured, params.validate_, data_sha256=data.sha256, model_sha256=files.file_sha256(model_path)
        )
        written = validation.write(
            Path(params.paths.validation),
            measured,
            decision,
            lineage={**lineage_tags(params), **lineage},
            student_arch=params.student.arch,
        )
        model_id = (logged_student(params, model_path) or {}).get("model_id")
        for who, metrics, dataset in logged_metrics(measured, data.manifest):
            run.log_metrics(metrics, model_id=model_id if who == "student" else None, dataset=dataset)
        run.set_tags({tags.VALIDATION_PASSED: decision.passed, tags.CHAMPION_NOTE: champ.note})
        run.describe(run_notes.validate(student_m, teacher_m, champion_m, decision.to_dict()))
        run.log_datasets(
            data.manifest,
            Path(params.paths.prepared),
            {"test": "evaluation", params.gate.split: "gate"},
            tuple(datasets.operational_input(n, f, data.manifest) for n, f in measured.operational.items()),
        )
        for path in [*written, Path(params.paths.prepared) / MANIFEST_FILE]:
            run.log_artifact(path)
    verdict = "passed" if decision.passed else "failed: " + "; ".join(decision.reasons)
    log.info("validate_student: top-1 %.4f (teacher %.4f), %s", student_m["top1"], teacher_m["top1"], verdict)
    return validation.summary(measured, decision)


@claims(EXPORT)
def export_models(params: Params) -> dict[str, Any]:
    """The student and teacher as ONNX (student also int8) in ``paths.validation``, with parity and the cost
    table: what validate does first, alone and without an MLflow run (the files are registered by promote)."""
    data = load_prepared(params.paths.prepared, expect=params.data.model_dump(), progress_mode=params.runtime.progress)
    student, _ = load_model(Path(params.paths.student) / MODEL_FILE, trained_on=data.sha256)
    teacher_model = teacher.load(params, data)
    deployed = export_and_measure(params, data, student, teacher_model, teacher.lineage(params)).as_dict()
    log.info("export: %s", ", ".join(f"{who} {f}" for who, by in deployed["cost"].items() for f in by))
    return deployed
