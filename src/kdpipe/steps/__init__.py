"""The pipeline's steps as plain functions: the one seam the CLI, DVC and Kubeflow all call.

Each step loads its inputs from ``params.paths``, computes, decides, and records its files there and
one MLflow run; it returns a small summary. Nothing here knows which orchestrator called it; the work
itself lives in the modules each step names. Each step holds the directories it reads and writes
for its whole run (:func:`kdpipe.steps.workdir.claims`); one called without ``tracking.pipeline_run_id``
takes ``$KDPIPE_PIPELINE_RUN_ID`` or a fresh id.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from kdpipe.config import Params
from kdpipe.data import operational
from kdpipe.data.prepared import MANIFEST_FILE, build_splits, load_prepared, write_prepared
from kdpipe.data.sources import load_source
from kdpipe.deploy.deployment import export_and_measure, registry_files
from kdpipe.distill import create_distiller
from kdpipe.evaluation import plots, validation
from kdpipe.evaluation.metrics import classification_metrics, inference_cost, predict_logits, scalars
from kdpipe.infra import files
from kdpipe.infra.errors import KdpipeError
from kdpipe.models import create_model
from kdpipe.models.file import MODEL_FILE, load_model, save_model
from kdpipe.promotion import champion
from kdpipe.promotion import moves as registry_moves
from kdpipe.promotion.gate import Scores
from kdpipe.steps.workdir import claims, need_space, training_space
from kdpipe.teacher import cache as cached_teacher
from kdpipe.teacher import source as teacher
from kdpipe.tracking import datasets, registry, run_notes, tags
from kdpipe.tracking.runs import check_tracking, lineage_tags, logged_student, step_run, tracking_errors
from kdpipe.tracking.ui_links import model_version
from kdpipe.training import distributed
from kdpipe.training.diagnostics import projector_effective_rank
from kdpipe.training.loop import STUDENT_CHECKPOINTS, train
from kdpipe.training.runtime import eval_loader, make_runtime, place_model, rank_probe, student_views, training_views

log = logging.getLogger("kdpipe")


@claims("prepare_data")
def prepare_data(params: Params, *, prepared_elsewhere: bool = False) -> dict[str, Any]:
    """Materialise the data set as fixed splits with a manifest naming it by sha256.

    ``prepared_elsewhere``: the data at ``paths.prepared`` came ready (a DVC revision); it is only
    verified against its manifest and recorded.
    """
    check_tracking(params)
    d, out = params.data, Path(params.paths.prepared)
    if prepared_elsewhere:
        manifest = load_prepared(out, verify=True).manifest
    else:
        raw = load_source(d.source, d.root, d.image_size)
        tensors = build_splits(raw, d.val_size, d.seed, d.train_subset, d.test_subset)
        manifest = write_prepared(out, tensors, raw, d.model_dump())
    with step_run(params, "prepare_data", {tags.DATA_SHA256: manifest["sha256"]}) as run:
        run.log_metrics({f"{k}_size": v for k, v in manifest["splits"].items()})
        run.log_artifact(out / MANIFEST_FILE)
        run.describe(run_notes.prepare(manifest))
    log.info(
        "prepare_data: %s -> %s (sha256 %s, splits %s)",
        manifest["source"],
        out,
        manifest["sha256"][:12],
        manifest["splits"],
    )
    return manifest


@claims("evaluate_teacher")
def evaluate_teacher(params: Params) -> dict[str, Any]:
    """Load the teacher (or train one for the embedded demo), check its classes, measure it."""
    runtime = make_runtime(params)
    data = load_prepared(params.paths.prepared, expect=params.data.model_dump())
    out = Path(params.paths.teacher)
    lineage = {tags.DATA_SHA256: data.sha256, tags.TEACHER_SOURCE: params.teacher.source}
    with step_run(params, "evaluate_teacher", lineage) as run:
        model, arch, version = teacher.resolve(
            params,
            data,
            runtime,
            on_epoch=lambda rec: run.log_metrics(
                {f"{tags.TEACHER_TRAIN_PREFIX}{k}": v for k, v in rec.items() if k != "epoch"}, rec["epoch"]
            ),
        )
        run.set_tags({tags.TEACHER_VERSION: version, tags.DEVICE: str(runtime.device)})
        model = place_model(model, params, runtime)
        logits = predict_logits(model, eval_loader(data, "test", params, runtime))
        metrics = {
            **classification_metrics(logits, data.split("test")[1]),
            **inference_cost(model, tuple(data.manifest["shape"]), runtime.device),
            "arch": arch,
        }
        files.write_json(out / files.METRICS_FILE, scalars(metrics))
        files.write_json(out / files.DETAILS_FILE, metrics)
        run.log_metrics({f"{tags.split_prefix('teacher', 'test')}{k}": v for k, v in metrics.items()})
        run.describe(run_notes.teacher(arch, version, metrics["top1"]))
    log.info("evaluate_teacher: %s test top-1 %.4f", arch, metrics["top1"])
    return scalars(metrics)


@claims("distill")
def distill(params: Params, resume: bool = False, *, rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """Train the student with the configured method; checkpoint each epoch; save the student.

    Returns the summary written to ``metrics.json`` plus the per-epoch ``history``.
    """
    runtime = make_runtime(params, rank)
    data = load_prepared(params.paths.prepared, expect=params.data.model_dump())
    method, cfg, out = params.method.name, params.train, Path(params.paths.student)
    teacher_model = None if method == "scratch" else place_model(teacher.load(params, data), params, runtime)
    views = student_views(data, params, runtime, rank, world_size)
    outputs = cached_teacher.attach(
        params,
        data,
        teacher_model,
        teacher.stored_sha256(params),
        views.num_samples,
        rank=rank,
        world_size=world_size,
        runtime=runtime,
    )
    torch.manual_seed(cfg.seed)
    student = place_model(create_model(params.student.arch, data.num_classes, data.in_channels), params, runtime)
    distiller = create_distiller(params.method, student, outputs or teacher_model).to(runtime.device)
    checkpoints = Path(params.paths.checkpoints) / STUDENT_CHECKPOINTS
    need_space(training_space(distiller, checkpoints, out), "student's checkpoint and model")
    run_tags = {
        tags.DATA_SHA256: data.sha256,
        tags.METHOD: method,
        tags.DEVICE: str(runtime.device),
        tags.WORLD_SIZE: world_size,
        **teacher.lineage(params),
    }
    probe = rank_probe(data, params, runtime) if runtime.is_main and hasattr(distiller, "projector") else None
    # Under DDP only rank 0 talks to MLflow; the other ranks train and stay silent.
    with step_run(params, "distill", run_tags, main=runtime.is_main, system_metrics=True) as run:

        def on_epoch(record: dict[str, Any]) -> None:
            if probe is not None:  # here, once per epoch, never in the training loop
                record["projector_effective_rank"] = projector_effective_rank(
                    distiller.student, distiller.projector, probe
                )
            run.log_metrics({k: v for k, v in record.items() if k != "epoch"}, record["epoch"])

        start = time.perf_counter()
        history = train(
            distiller,
            cached_teacher.CachedViews(views, outputs) if outputs else views,
            eval_loader(data, "val", params, runtime),
            cfg,
            runtime,
            checkpoints,
            resume=resume,
            on_epoch=on_epoch,
            label=f"distill[{method}]",
            meta={"pipeline_run_id": params.tracking.pipeline_run_id},
            fingerprint=files.fingerprint(
                "student",
                params.student.arch,
                cached_teacher.method_identity(params),
                cfg.identity(),
                data.sha256,
                world_size,
                training_views(params, data),
            ),
            wrapped=distributed.wrap(distiller, runtime.device) if world_size > 1 else None,
        )
        run.log_epochs(history)  # a resumed run's earlier epochs, from the checkpoint
        summary = {
            "method": method,
            "epochs": len(history),
            "final_val_acc": history[-1].get("val_acc"),
            "final_train_acc": history[-1]["train_acc"],
            "train_seconds": time.perf_counter() - start,
        }
        if runtime.is_main:
            save_model(
                out / MODEL_FILE,
                student,
                params.student.arch,
                data.classes,
                data.in_channels,
                data_sha256=data.sha256,
                method=method,
                pipeline_run_id=params.tracking.pipeline_run_id,
            )
            files.write_csv(out / files.HISTORY_FILE, history)
            files.write_json(out / files.METRICS_FILE, summary)
            run.log_artifact(out / files.HISTORY_FILE)
            run.log_artifact(
                plots.learning_curves(history, out / files.LEARNING_CURVES_FILE, f"{method}: {params.student.arch}")
            )
            run.log_datasets(data.manifest, Path(params.paths.prepared), {"train": "training", "val": "validation"})
            run.log_student(student, out / MODEL_FILE, data.manifest)
            run.describe(
                run_notes.distill(summary, run_tags, params.student.arch, str(params.tracking.pipeline_run_id))
            )
    return {**summary, "history": history}


@claims("teacher_cache")
def fill_teacher_cache(params: Params, world_size: int = 1) -> dict[str, Any]:
    """Record the teacher's outputs for every view the distill step will train on (each of ``world_size``
    ranks' shard), so that distill replays them; no MLflow run, the cache is a cache."""
    runtime = make_runtime(params)
    data = load_prepared(params.paths.prepared, expect=params.data.model_dump())
    return cached_teacher.fill(
        params,
        data,
        place_model(teacher.load(params, data), params, runtime),
        teacher.stored_sha256(params),
        lambda rank: student_views(data, params, runtime, rank, world_size),
        world_size,
        runtime,
    )


@claims("validate_student")
def validate_student(params: Params) -> dict[str, Any]:
    """Measure the student beside its teacher and the champion; report the test split, decide on ``gate.split``."""
    runtime = make_runtime(params)
    data = load_prepared(params.paths.prepared, expect=params.data.model_dump())
    model_path = Path(params.paths.student) / MODEL_FILE
    student, _ = load_model(model_path, trained_on=data.sha256)
    fields = operational.load_all(params.validate_.operational, data.manifest)
    teacher_model = place_model(teacher.load(params, data), params, runtime)
    student = place_model(student, params, runtime)
    lineage = {tags.DATA_SHA256: data.sha256, tags.DEVICE: str(runtime.device), **teacher.lineage(params)}
    with step_run(params, "validate_student", lineage) as run:
        exported = export_and_measure(params, data, student, teacher_model) if params.export.enabled else None
        measured = validation.measure(
            params, data, runtime, student, teacher_model, champion.measure(params, data), fields, exported
        )
        student_m, teacher_m, champion_m, champ = measured.student, measured.teacher, measured.champion, measured.champ
        decision = validation.decide(measured, params.validate_)
        written = validation.write(
            Path(params.paths.validation),
            measured,
            decision,
            data_sha256=data.sha256,
            model_sha256=files.file_sha256(model_path),
            lineage={**lineage_tags(params), **lineage},
            student_arch=params.student.arch,
        )
        model_id = (logged_student(params, model_path) or {}).get("model_id")
        for who, metrics, dataset in validation.logged_metrics(measured, data.manifest):
            run.log_metrics(metrics, model_id=model_id if who == "student" else None, dataset=dataset)
        run.set_tags({tags.VALIDATION_PASSED: decision["passed"], tags.CHAMPION_NOTE: champ.note})
        run.describe(run_notes.validate(student_m, teacher_m, champion_m, decision))
        run.log_datasets(
            data.manifest,
            Path(params.paths.prepared),
            {"test": "evaluation", params.gate.split: "gate"},
            tuple(datasets.operational_input(n, f, data.manifest) for n, f in measured.operational.items()),
        )
        for path in [*written, Path(params.paths.prepared) / MANIFEST_FILE]:
            run.log_artifact(path)
    verdict = "passed" if decision["passed"] else "failed: " + "; ".join(decision["reasons"])
    log.info("validate_student: top-1 %.4f (teacher %.4f), %s", student_m["top1"], teacher_m["top1"], verdict)
    return validation.summary(measured, decision)


@claims("export")
def export_models(params: Params) -> dict[str, Any]:
    """The student and teacher as ONNX (student also int8) in ``paths.validation``, with parity and the cost
    table: what validate does first, alone and without an MLflow run (the files are registered by promote)."""
    data = load_prepared(params.paths.prepared, expect=params.data.model_dump())
    student, _ = load_model(Path(params.paths.student) / MODEL_FILE, trained_on=data.sha256)
    deployed = export_and_measure(params, data, student, teacher.load(params, data)).as_dict()
    log.info("export: %s", ", ".join(f"{who} {f}" for who, by in deployed["cost"].items() for f in by))
    return deployed


@claims("promote")
def promote(params: Params, dry_run: bool = False) -> dict[str, Any]:
    """Register the validated student as ``challenger``; move ``champion`` to it when the gate agrees.

    The rule is :mod:`kdpipe.promotion.gate`'s, the registry moves :mod:`kdpipe.promotion.moves`'s; this step makes
    sure the student on disk is the one validated and hands both to them. ``dry_run`` changes nothing.
    """
    val_dir, model_path = Path(params.paths.validation), Path(params.paths.student) / MODEL_FILE
    decision_path = val_dir / files.DECISION_FILE
    if not decision_path.exists():
        raise KdpipeError(
            f"{decision_path}: missing; run `kdpipe validate` first (an unvalidated student is never promoted)"
        )
    if not model_path.exists():
        raise KdpipeError(f"{model_path}: missing; run `kdpipe distill` first")
    decision, model_sha = files.read_json(decision_path), files.file_sha256(model_path)
    if decision.get("model_sha256") != model_sha:
        raise KdpipeError(
            f"{model_path}: changed since {decision_path} was written; rerun `kdpipe validate` before promoting it"
        )
    if not params.tracking.enabled:
        return _record_promotion(params, registry_moves.without_registry(decision, model_sha, dry_run=dry_run))
    validated = files.load_checkpoint(val_dir / files.PREDICTIONS_FILE)
    result = Scores.from_predictions(
        validated["student"], validated["labels"], decision["data_sha256"], decision.get("corrupted_top1")
    )
    lineage = {**lineage_tags(params), **teacher.lineage(params)}
    version_tags = registry_moves.candidate_tags(
        lineage,
        files.read_json(val_dir / files.METRICS_FILE)["student"],
        data_sha256=decision["data_sha256"],
        model_sha256=model_sha,
        student_arch=load_model(model_path)[1]["arch"],
        method=params.method.name,
        passed=decision["passed"],
    )
    check_tracking(params)
    mlflow_client, name = registry.client(params.tracking.uri), params.tracking.registered_model
    evaluate = champion.evaluator(params, validated, decision["data_sha256"])
    if dry_run:
        with tracking_errors(params, "promote --dry-run"):
            cand = registry_moves.Candidate("(logged when promoted)", None, result, decision, version_tags)
            record = registry_moves.promote_candidate(mlflow_client, name, cand, params.gate, evaluate, dry_run=True)
        return _record_promotion(params, record)
    with step_run(params, "promote", {tags.DATA_SHA256: decision["data_sha256"], tags.MODEL_SHA256: model_sha}) as run:
        manifest = files.read_json(Path(params.paths.prepared) / MANIFEST_FILE)
        logged = logged_student(params, model_path) or run.log_classifier(
            load_model(model_path)[0], model_path, manifest
        )
        cand = registry_moves.Candidate(
            logged["model_uri"],
            logged["run_id"],
            result,
            decision,
            {**version_tags, **run.log_onnx(registry_files(val_dir), manifest)},
        )
        record = registry_moves.promote_candidate(mlflow_client, name, cand, params.gate, evaluate)
        run.set_tags(
            {
                tags.PROMOTION_DECISION: "champion" if record["promoted"] else "challenger",
                tags.REGISTERED_VERSION: record["version"],
            }
        )
        run.log_text(json.dumps(record, indent=2) + "\n", files.PROMOTION_FILE)
        run.describe(record["message"])
    return _record_promotion(params, record)


def _record_promotion(params: Params, record: dict[str, Any]) -> dict[str, Any]:
    """The decision next to the pipeline's outputs (DVC tracks it) and in the log; dry runs write nothing."""
    if not record["dry_run"]:
        files.atomic_write_text(
            Path(params.paths.promotion) / files.PROMOTION_FILE, json.dumps(record, indent=2) + "\n"
        )
    log.info("promote: %s", record["message"])
    if record.get("version") and params.tracking.enabled:
        log.info("promote: %s", model_version(params, params.tracking.registered_model, record["version"]))
    return record


def rollback(params: Params, dry_run: bool = False) -> dict[str, Any]:
    """Move ``champion`` back to the version it replaced, in the registry named by ``params.tracking``."""
    with tracking_errors(params, "rollback"):
        result = registry_moves.rollback(
            registry.connect(params, "rollback"), params.tracking.registered_model, dry_run=dry_run
        )
    log.info("rollback: %s", result["message"])
    return result


def add_webhook(params: Params, url: str, secret: str) -> dict[str, Any]:
    """Have the registry's MLflow server call ``url``, signed with ``secret``, when a version gets an alias."""
    with tracking_errors(params, "adding the webhook"):
        hook = registry.add_alias_webhook(
            registry.connect(params, "a webhook"), params.tracking.registered_model, url, secret
        )
    return {
        "webhook_id": hook.webhook_id,
        "message": f"webhook {hook.webhook_id}: {params.tracking.uri} will POST to "
        f"{url} when a version gets an alias (act on alias 'champion' of {params.tracking.registered_model})",
    }


@claims("run_pipeline")
def run_pipeline(params: Params, resume: bool = False) -> dict[str, Any]:
    """All five steps in order under one pipeline run id, holding every directory, as `kdpipe run` and the demo do."""
    check_tracking(params)
    return {
        "data": prepare_data(params),
        "teacher": evaluate_teacher(params),
        "distill": distill(params, resume=resume),
        "validation": validate_student(params),
        "promotion": promote(params),
    }
