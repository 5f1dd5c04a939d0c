"""The five pipeline steps as plain functions: the one seam the CLI, DVC and Kubeflow all call.

Each step reads its inputs from the paths in ``params.paths``, writes its outputs there, logs an
MLflow run, and returns a small summary dict. Nothing here knows which orchestrator called it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from kdpipe import champion, distributed, plots, registry, report
from kdpipe.checkpoint import atomic_write_bytes
from kdpipe.config import Params, TrainConfig
from kdpipe.data.loader import InMemoryLoader
from kdpipe.data.prepared import PreparedData, build_splits, load_prepared, sample, write_prepared
from kdpipe.data.sources import load_source
from kdpipe.diagnostics import RANK_BATCH, projector_effective_rank
from kdpipe.distill import create_distiller
from kdpipe.engine import Runtime, train
from kdpipe.errors import KdpipeError, TeacherMismatchError
from kdpipe.evaluate import classification_metrics, measure_speed, model_size, predict_logits
from kdpipe.model_file import MODEL_FILE, load_model, save_model
from kdpipe.models import FeatureClassifier, create_model
from kdpipe.promote import MODEL_SHA_TAG, Candidate, Scores, decide_thresholds, promote_candidate, record_locally
from kdpipe.tracking import StepRun, check_tracking, lineage_tags, pipeline_run_id, step_run, tracking_errors

log = logging.getLogger("kdpipe")

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
DECISION_FILE = "decision.json"
DETAILS_FILE = "details.json"
PREDICTIONS_FILE = "predictions.pt"
REPORT_FILE = "report.md"
MODEL_RECORD_FILE = "mlflow_model.json"  # where distill logged the student in MLflow


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_runtime(params: Params, rank: int = 0) -> Runtime:
    rt = params.runtime
    torch.set_num_threads(rt.num_threads or os.cpu_count() or 1)
    if rt.device == "cuda" and not torch.cuda.is_available():
        raise KdpipeError("runtime.device: 'cuda' requested but no CUDA device is available")
    use_cuda = rt.device == "cuda" or (rt.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{torch.cuda.current_device()}" if use_cuda else "cpu")
    return Runtime(device=device, amp=rt.amp and use_cuda, progress=rt.progress, is_main=rank == 0)


def make_loader(
    data: PreparedData, split: str, batch_size: int, params: Params, runtime: Runtime, *, train: bool = False,
    seed: int = 0, rank: int = 0, world_size: int = 1, subset: int | None = None,
) -> InMemoryLoader:
    x, y = sample(*data.split(split), subset, params.data.seed)
    m = data.manifest
    return InMemoryLoader(
        x, y, batch_size, m["mean"], m["std"], train=train, crop_padding=params.data.crop_padding,
        hflip=bool(m["hflip"]), seed=seed, device=runtime.device,
        channels_last=params.runtime.channels_last and runtime.device.type == "cuda", rank=rank, world_size=world_size,
    )


def _prepare_model(model: FeatureClassifier, params: Params, runtime: Runtime) -> FeatureClassifier:
    model = model.to(runtime.device)
    if params.runtime.channels_last and runtime.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


# --- step 1 -----------------------------------------------------------------------------------


def prepare_data(params: Params) -> dict[str, Any]:
    """Materialise the data set as fixed splits with a manifest naming it by sha256."""
    check_tracking(params)
    d = params.data
    raw = load_source(d.source, d.root, d.image_size)
    tensors = build_splits(raw, d.val_size, d.seed, d.train_subset, d.test_subset)
    out = Path(params.paths.prepared)
    manifest = write_prepared(out, tensors, raw, d.source, d.seed, d.hflip)
    with step_run(params, "prepare_data", {"kdpipe.data_sha256": manifest["sha256"]}) as run:
        run.log_metrics({f"{k}_size": v for k, v in manifest["splits"].items()})
        run.log_artifact(out / "manifest.json")
    log.info("prepare_data: %s -> %s (sha256 %s, splits %s)", d.source, out, manifest["sha256"][:12], manifest["splits"])
    return manifest


# --- step 2 -----------------------------------------------------------------------------------


def _check_teacher_classes(teacher_meta: dict[str, Any], data: PreparedData, source: str) -> None:
    classes = list(teacher_meta["classes"])
    if classes != data.classes:
        raise TeacherMismatchError(
            f"teacher.source {source}: the teacher predicts {len(classes)} classes {classes[:4]}..., "
            f"the data has {data.num_classes} classes {data.classes[:4]}...; they must match"
        )
    if int(teacher_meta["in_channels"]) != data.in_channels:
        raise TeacherMismatchError(
            f"teacher.source {source}: the teacher takes {teacher_meta['in_channels']} input channels, "
            f"the data has {data.in_channels}"
        )


def _train_teacher(params: Params, data: PreparedData, runtime: Runtime, run: Any) -> FeatureClassifier:
    cfg: TrainConfig = params.teacher.train
    torch.manual_seed(cfg.seed)
    teacher = _prepare_model(create_model(params.teacher.arch, data.num_classes, data.in_channels), params, runtime)
    distiller = create_distiller(params.method.model_copy(update={"name": "scratch"}), teacher, None)
    train(
        distiller,
        make_loader(data, "train", cfg.batch_size, params, runtime, train=True, seed=cfg.seed, subset=cfg.subset),
        make_loader(data, "val", params.runtime.eval_batch_size, params, runtime),
        cfg,
        runtime,
        Path(params.paths.checkpoints) / "teacher",
        resume=True,
        fingerprint=fingerprint("teacher", params.teacher.model_dump(mode="json"), data.sha256),
        on_epoch=lambda rec: run.log_metrics({f"teacher_{k}": v for k, v in rec.items() if k != "epoch"}, rec["epoch"]),
        label="teacher",
    )
    return teacher


def evaluate_teacher(params: Params) -> dict[str, Any]:
    """Load the teacher (or train one for the embedded demo), check its classes, measure it."""
    runtime = make_runtime(params)
    data = load_prepared(params.paths.prepared)
    out = Path(params.paths.teacher)
    source = params.teacher.source
    wanted = fingerprint("teacher", params.teacher.model_dump(mode="json"), data.sha256)
    with step_run(params, "evaluate_teacher", {"kdpipe.data_sha256": data.sha256, "kdpipe.teacher_source": source}) as run:
        if source == "train":
            existing = out / MODEL_FILE
            teacher, meta = load_model(existing) if existing.exists() else (None, {"meta": {}})
            if teacher is not None and meta["meta"].get("fingerprint") == wanted:
                log.info("evaluate_teacher: reusing the teacher in %s (same params and data)", existing)
            else:
                teacher = _train_teacher(params, data, runtime, run)
                meta = {"arch": params.teacher.arch, "classes": data.classes, "in_channels": data.in_channels}
                save_model(existing, teacher, params.teacher.arch, data.classes, data.in_channels,
                           fingerprint=wanted, data_sha256=data.sha256, source="train", version=f"train:{wanted}")
            version = f"train:{wanted}"
        else:
            if source.startswith("models:/"):
                teacher, meta, version = _registry_teacher(params, source)
            else:
                teacher, meta = load_model(Path(source))
                version = f"sha256:{file_sha256(Path(source))[:16]}"
            _check_teacher_classes(meta, data, source)
            save_model(out / MODEL_FILE, teacher, meta["arch"], meta["classes"], meta["in_channels"],
                       fingerprint=wanted, data_sha256=data.sha256, source=source, version=version)
        run.set_tags({"kdpipe.teacher_version": version, "kdpipe.device": str(runtime.device)})
        teacher = _prepare_model(teacher, params, runtime)
        logits = predict_logits(teacher, make_loader(data, "test", params.runtime.eval_batch_size, params, runtime))
        metrics = classification_metrics(logits, data.split("test")[1])
        metrics.update(model_size(teacher))
        metrics.update(measure_speed(teacher, tuple(data.manifest["shape"]), runtime.device))
        metrics["arch"] = meta["arch"]
        write_json(out / METRICS_FILE, _scalars(metrics))
        write_json(out / DETAILS_FILE, metrics)
        run.log_metrics({f"teacher_test_{k}": v for k, v in metrics.items()})
    log.info("evaluate_teacher: %s test top-1 %.4f", meta["arch"], metrics["top1"])
    return _scalars(metrics)


def _registry_teacher(params: Params, source: str) -> tuple[FeatureClassifier, dict[str, Any], str]:
    """A teacher from the MLflow registry: the kdpipe checkpoint logged with that model version."""
    if not params.tracking.enabled:
        raise KdpipeError(f"teacher.source {source}: a registry teacher needs tracking.enabled (the registry at tracking.uri)")
    with tracking_errors(params, f"fetching the teacher {source}"), tempfile.TemporaryDirectory() as tmp:
        path, mv = registry.fetch_checkpoint(registry.client(params.tracking.uri), source, Path(tmp))
        teacher, meta = load_model(path)
    return teacher, meta, f"{mv.name}/{mv.version}"


def teacher_lineage(params: Params) -> dict[str, str]:
    """The teacher's source and resolved version, as evaluate_teacher recorded them."""
    path = Path(params.paths.teacher) / MODEL_FILE
    blob = load_model(path)[1] if path.exists() else {"meta": {}}
    meta = blob["meta"]
    return {"kdpipe.teacher_source": str(meta.get("source", params.teacher.source)),
            "kdpipe.teacher_version": str(meta.get("version", "unknown")),
            "kdpipe.teacher_arch": str(blob.get("arch", params.teacher.arch))}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}


# --- step 3 -----------------------------------------------------------------------------------


def load_teacher_for(params: Params, data: PreparedData) -> FeatureClassifier:
    teacher, meta = load_model(Path(params.paths.teacher) / MODEL_FILE)
    _check_teacher_classes(meta, data, params.teacher.source)
    return teacher


def _rank_probe(data: PreparedData, params: Params, runtime: Runtime) -> torch.Tensor:
    """A fixed, normalised batch on which the projector's effective rank is measured each epoch."""
    split = "val" if len(data.split("val")[1]) >= 2 else "train"
    return next(iter(make_loader(data, split, RANK_BATCH, params, runtime)))[0]


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for rec in history:
        keys += [k for k in rec if k not in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


def distill(params: Params, resume: bool = False, rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """Train the student with the configured method; checkpoint each epoch; save the student."""
    runtime = make_runtime(params, rank)
    data = load_prepared(params.paths.prepared)
    method = params.method.name
    teacher = None
    if method != "scratch":
        teacher = _prepare_model(load_teacher_for(params, data), params, runtime)
    cfg = params.train
    torch.manual_seed(cfg.seed)
    student = _prepare_model(create_model(params.student.arch, data.num_classes, data.in_channels), params, runtime)
    distiller = create_distiller(params.method, student, teacher).to(runtime.device)
    out = Path(params.paths.student)
    history_path = out / HISTORY_FILE
    tags = {"kdpipe.data_sha256": data.sha256, "kdpipe.method": method, "kdpipe.device": str(runtime.device),
            "kdpipe.world_size": world_size, **teacher_lineage(params)}
    probe = _rank_probe(data, params, runtime) if runtime.is_main and hasattr(distiller, "projector") else None
    # Under DDP only rank 0 talks to MLflow; the other ranks train and stay silent.
    with step_run(params, "distill", tags, main=runtime.is_main) as run:

        def on_epoch(record: dict[str, Any]) -> None:
            if probe is not None:  # here, once per epoch, never in the training loop
                record["projector_effective_rank"] = projector_effective_rank(distiller.student, distiller.projector, probe)
            run.log_metrics({k: v for k, v in record.items() if k != "epoch"}, record["epoch"])

        start = time.perf_counter()
        history = train(
            distiller,
            make_loader(data, "train", cfg.batch_size, params, runtime, train=True, seed=cfg.seed, rank=rank,
                        world_size=world_size, subset=cfg.subset),
            make_loader(data, "val", params.runtime.eval_batch_size, params, runtime),
            cfg,
            runtime,
            Path(params.paths.checkpoints) / "student",
            resume=resume,
            fingerprint=fingerprint("student", params.student.arch, params.method.model_dump(mode="json"),
                                    cfg.model_dump(mode="json"), data.sha256, world_size),
            on_epoch=on_epoch,
            label=f"distill[{method}]",
            wrapped=distributed.wrap(distiller, runtime.device) if world_size > 1 else None,
        )
        summary = {
            "method": method,
            "epochs": len(history),
            "final_val_acc": history[-1].get("val_acc"),
            "final_train_acc": history[-1]["train_acc"],
            "train_seconds": time.perf_counter() - start,
        }
        if runtime.is_main:
            save_model(out / MODEL_FILE, student, params.student.arch, data.classes, data.in_channels,
                       data_sha256=data.sha256, method=method, pipeline_run_id=pipeline_run_id())
            _write_history(history_path, history)
            write_json(out / METRICS_FILE, summary)
            run.log_artifact(history_path)
            run.log_artifact(plots.learning_curves(history, out / "learning_curves.png", f"{method}: {params.student.arch}"))
            run.log_artifact(Path(params.paths.prepared) / "manifest.json")
            logged = run.log_classifier(student, out / MODEL_FILE, data.manifest)
            record_path = out / MODEL_RECORD_FILE
            if logged:
                write_json(record_path, {**logged, "model_sha256": file_sha256(out / MODEL_FILE)})
            else:
                record_path.unlink(missing_ok=True)
    return summary


# --- step 4 -----------------------------------------------------------------------------------


def validate_student(params: Params) -> dict[str, Any]:
    """Measure the student beside its teacher on the test split and decide pass or fail."""
    runtime = make_runtime(params)
    data = load_prepared(params.paths.prepared)
    student, smeta = load_model(Path(params.paths.student) / MODEL_FILE)
    if smeta["meta"].get("data_sha256") != data.sha256:
        raise KdpipeError(
            f"{params.paths.student}/{MODEL_FILE}: trained on data {str(smeta['meta'].get('data_sha256'))[:12]}, "
            f"but the prepared data is {data.sha256[:12]}; rerun distill"
        )
    teacher = _prepare_model(load_teacher_for(params, data), params, runtime)
    student = _prepare_model(student, params, runtime)
    test_loader = make_loader(data, "test", params.runtime.eval_batch_size, params, runtime)
    t_logits = predict_logits(teacher, test_loader)
    s_logits = predict_logits(student, test_loader)
    labels = data.split("test")[1]
    shape = tuple(data.manifest["shape"])
    student_m = {**classification_metrics(s_logits, labels, t_logits), **model_size(student),
                 **measure_speed(student, shape, runtime.device)}
    teacher_m = {**classification_metrics(t_logits, labels), **model_size(teacher),
                 **measure_speed(teacher, shape, runtime.device)}
    decision = decide_thresholds(student_m, teacher_m, params.validate_)
    out = Path(params.paths.validation)
    lineage = {"kdpipe.data_sha256": data.sha256, "kdpipe.device": str(runtime.device), **teacher_lineage(params)}
    with step_run(params, "validate_student", lineage) as run:
        champ = champion.measure(params, data)
        champion_m = None
        if champ.logits is not None:
            champion_m = {**classification_metrics(champ.logits, labels, t_logits), "label": f"v{champ.version}",
                          **champ.recorded()}
        scalars = {"student": _scalars(student_m), "teacher": _scalars(teacher_m), "passed": decision["passed"],
                   "champion": _scalars(champion_m) if champion_m else None}
        write_json(out / METRICS_FILE, scalars)
        write_json(out / DETAILS_FILE, {"student": student_m, "teacher": teacher_m, "champion": champion_m,
                                        "classes": data.classes})
        write_json(out / DECISION_FILE, {**decision, "data_sha256": data.sha256,
                                         "model_sha256": file_sha256(Path(params.paths.student) / MODEL_FILE),
                                         "champion": {"version": champ.version, "note": champ.note,
                                                      "top1": champion_m["top1"] if champion_m else None}})
        predictions: dict[str, Any] = {"student": s_logits.argmax(1), "teacher": t_logits.argmax(1), "labels": labels}
        if champ.logits is not None:
            predictions.update(champion=champ.logits.argmax(1), champion_version=champ.version)
        torch.save(predictions, out / PREDICTIONS_FILE)
        (out / REPORT_FILE).write_text(report.render(
            {**teacher_m, "arch": lineage["kdpipe.teacher_arch"]}, {**student_m, "arch": params.student.arch},
            champion_m, decision, {**lineage_tags(params), **lineage}, champ.note))
        run.log_metrics({f"student_test_{k}": v for k, v in student_m.items()})
        run.log_metrics({f"teacher_test_{k}": v for k, v in teacher_m.items()})
        run.log_metrics({f"champion_test_{k}": v for k, v in (champion_m or {}).items()})
        run.set_tags({"kdpipe.validation_passed": decision["passed"], "kdpipe.champion": champ.note})
        plots.confusion_matrix(student_m["confusion_matrix"], data.classes, out / "confusion_matrix.png",
                               f"student {params.student.arch}, test top-1 {student_m['top1']:.2%}")
        for name in (METRICS_FILE, DECISION_FILE, DETAILS_FILE, REPORT_FILE, "confusion_matrix.png"):
            run.log_artifact(out / name)
        run.log_artifact(Path(params.paths.prepared) / "manifest.json")
    verdict = "passed" if decision["passed"] else "failed: " + "; ".join(decision["reasons"])
    log.info("validate_student: top-1 %.4f (teacher %.4f), %s", student_m["top1"], teacher_m["top1"], verdict)
    return scalars


# --- step 5 -----------------------------------------------------------------------------------


def promote(params: Params, dry_run: bool = False) -> dict[str, Any]:
    """Register the validated student as ``challenger``; move ``champion`` to it when the gate agrees.

    The rule is :mod:`kdpipe.promote`'s; this step gathers what validation measured, makes sure the
    student on disk is the one validated, and hands both to it. ``dry_run`` changes nothing anywhere.
    """
    val_dir, model_path = Path(params.paths.validation), Path(params.paths.student) / MODEL_FILE
    decision_path = val_dir / DECISION_FILE
    if not decision_path.exists():
        raise KdpipeError(f"{decision_path}: missing; run `kdpipe validate` first (an unvalidated student is never promoted)")
    if not model_path.exists():
        raise KdpipeError(f"{model_path}: missing; run `kdpipe distill` first")
    decision = json.loads(decision_path.read_text())
    model_sha = file_sha256(model_path)
    if decision.get("model_sha256") != model_sha:
        raise KdpipeError(f"{model_path}: changed since {decision_path} was written; rerun `kdpipe validate` before promoting it")
    if not params.tracking.enabled:
        record = {"promoted": False, "would_promote": decision["passed"], "dry_run": dry_run, "version": None,
                  "message": "tracking.enabled is false: no registry, nothing promoted; validation "
                             + ("passed" if decision["passed"] else "failed: " + "; ".join(decision["reasons"])),
                  "reasons": decision["reasons"], "data_sha256": decision["data_sha256"], "model_sha256": model_sha}
        record_locally(record, Path(params.paths.promotion))
        log.info("promote: %s", record["message"])
        return record
    validated = torch.load(val_dir / PREDICTIONS_FILE, map_location="cpu", weights_only=True)
    result = Scores.from_predictions(validated["student"], validated["labels"], decision["data_sha256"])
    student_m = json.loads((val_dir / METRICS_FILE).read_text())["student"]
    tags = {**lineage_tags(params), **teacher_lineage(params), "kdpipe.data_sha256": decision["data_sha256"],
            MODEL_SHA_TAG: model_sha, "kdpipe.student_arch": load_model(model_path)[1]["arch"],
            "kdpipe.method": params.method.name, "kdpipe.validation_passed": str(decision["passed"]),
            **{f"kdpipe.{k}": str(student_m[k]) for k in ("top1", "top5", "parameters", "size_bytes", "latency_ms_batch1")
               if k in student_m}}
    check_tracking(params)
    mlflow_client = registry.client(params.tracking.uri)
    evaluate = champion.evaluator(params, validated, decision["data_sha256"])
    name = params.tracking.registered_model
    if dry_run:
        with tracking_errors(params, "promote --dry-run"):
            cand = Candidate("(logged when promoted)", None, result, decision, tags)
            record = promote_candidate(mlflow_client, name, cand, params.gate, evaluate, dry_run=True)
    else:
        with step_run(params, "promote", {"kdpipe.data_sha256": decision["data_sha256"], MODEL_SHA_TAG: model_sha}) as run:
            logged = _logged_student(params, run, model_path, model_sha)
            cand = Candidate(logged["model_uri"], logged["run_id"], result, decision, tags)
            record = promote_candidate(mlflow_client, name, cand, params.gate, evaluate)
            run.set_tags({"kdpipe.promotion.decision": "champion" if record["promoted"] else "challenger",
                          "kdpipe.registered_version": record["version"]})
            run.log_text(json.dumps(record, indent=2) + "\n", "promotion.json")
    record_locally(record, Path(params.paths.promotion))
    log.info("promote: %s", record["message"])
    return record


def _logged_student(params: Params, run: StepRun, model_path: Path, model_sha: str) -> dict[str, str]:
    """Where distill logged this student in MLflow; logged here when distill could not (tracking was off)."""
    record_path = model_path.parent / MODEL_RECORD_FILE
    if record_path.exists():
        logged = json.loads(record_path.read_text())
        if logged.get("model_sha256") == model_sha and logged.get("tracking_uri") == params.tracking.uri:
            return logged
    manifest = json.loads((Path(params.paths.prepared) / "manifest.json").read_text())
    logged = run.log_classifier(load_model(model_path)[0], model_path, manifest)
    assert logged is not None, "the promote run is active whenever tracking is enabled"
    return logged


def run_pipeline(params: Params, resume: bool = False) -> dict[str, Any]:
    """All five steps in order, as `kdpipe run` and the demo do."""
    pipeline_run_id()
    check_tracking(params)
    manifest = prepare_data(params)
    teacher = evaluate_teacher(params)
    distilled = distill(params, resume=resume)
    validation = validate_student(params)
    promotion = promote(params)
    return {"data": manifest, "teacher": teacher, "distill": distilled, "validation": validation, "promotion": promotion}
