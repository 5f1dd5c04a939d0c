"""The distill step: the student trained with the configured method, checkpointed every epoch."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from kdpipe import identity
from kdpipe.config import Params
from kdpipe.data.prepared import load_prepared
from kdpipe.distill import create_distiller
from kdpipe.evaluation import plots
from kdpipe.infra import files
from kdpipe.infra.files import need_space
from kdpipe.models import create_model
from kdpipe.models.file import MODEL_FILE, save_model
from kdpipe.models.init_weights import load_matching
from kdpipe.steps.spec import DISTILL
from kdpipe.steps.tracked import tracked_run
from kdpipe.steps.workdir import claims
from kdpipe.teacher import cache as cached_teacher
from kdpipe.teacher import source as teacher
from kdpipe.tracking import run_notes, tags
from kdpipe.training import distributed
from kdpipe.training.diagnostics import projector_effective_rank
from kdpipe.training.loop import STUDENT_CHECKPOINTS, train, training_space
from kdpipe.training.runtime import eval_loader, gpu_hours, make_runtime, place_model, rank_probe, student_views
from kdpipe.training.student_init import INIT_REPORT_FILE, init_record, resolve_init

log = logging.getLogger("kdpipe")


@claims(DISTILL)
def distill(params: Params, resume: bool = False, *, rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """Train the student with the configured method; checkpoint each epoch; save the student.

    Returns the summary written to ``metrics.json`` plus the per-epoch ``history``.
    """
    runtime = make_runtime(params.runtime, rank)
    data = load_prepared(params.paths.prepared, expect=params.data.model_dump(), progress_mode=params.runtime.progress)
    method, cfg, out = params.method.name, params.train, Path(params.paths.student)
    init = resolve_init(params.student, params.tracking)
    teacher_model = None if method == "scratch" else place_model(teacher.load(params, data), runtime)
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
    student = create_model(params.student.arch, data.num_classes, data.in_channels, data.manifest["shape"][-1])
    if init is not None:
        loaded = init_record(init, load_matching(student, init.state, f"student.init {init.source}"))
        log.info("student.init %s: %d tensors loaded, new: %s", init.source, len(loaded["loaded"]), loaded["new"])
    student = place_model(student, runtime)
    distiller = create_distiller(method, student, outputs or teacher_model, **params.method.hyperparameters())
    distiller = distiller.to(runtime.device)
    checkpoints = Path(params.paths.checkpoints) / STUDENT_CHECKPOINTS
    need_space(training_space(distiller, checkpoints, out), "student's checkpoint and model")
    run_tags = {
        tags.DATA_SHA256: data.sha256,
        tags.METHOD: method,
        tags.DEVICE: str(runtime.device),
        tags.WORLD_SIZE: world_size,
        **({tags.STUDENT_INIT_SHA256: init.sha256} if init else {}),
        **teacher.lineage(params),
    }
    probe = rank_probe(data, params, runtime) if runtime.is_main and hasattr(distiller, "projector") else None
    # Under DDP only rank 0 talks to MLflow; the other ranks train and stay silent.
    with tracked_run(params, DISTILL, run_tags, main=runtime.is_main, system_metrics=True) as run:

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
            eval_loader(data, "val", runtime),
            cfg,
            runtime,
            checkpoints,
            resume=resume,
            on_epoch=on_epoch,
            label=f"distill[{method}]",
            meta={"pipeline_run_id": params.tracking.pipeline_run_id},
            fingerprint=identity.student_fingerprint(
                student=params.student,
                method=params.method,
                cache=params.cache,
                train=cfg,
                data_cfg=params.data,
                data=data,
                world_size=world_size,
                init_sha256=init.sha256 if init else None,
            ),
            wrapped=distributed.wrap(distiller, runtime.device) if world_size > 1 else None,
        )
        run.log_epochs(history)  # a resumed run's earlier epochs, from the checkpoint
        seconds = time.perf_counter() - start
        summary = {
            "method": method,
            "epochs": len(history),
            "final_val_acc": history[-1].get("val_acc"),
            "final_train_acc": history[-1]["train_acc"],
            "train_seconds": seconds,
            tags.GPU_HOURS: gpu_hours(runtime, world_size, seconds),  # this attempt's: a resumed run adds its own
        }
        run.log_metrics({k: summary[k] for k in ("train_seconds", tags.GPU_HOURS)})
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
            if init is not None:
                files.write_json(out / INIT_REPORT_FILE, loaded)
                run.log_artifact(out / INIT_REPORT_FILE)
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
