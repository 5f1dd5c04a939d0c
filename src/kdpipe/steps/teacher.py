"""The teacher's steps: evaluate_teacher (resolve and measure it) and fill_teacher_cache (record its
outputs for the student's views)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.data.prepared import load_prepared
from kdpipe.evaluation.metrics import classification_metrics, inference_cost, predict_logits, scalars
from kdpipe.infra import files
from kdpipe.steps.spec import EVALUATE_TEACHER, TEACHER_CACHE
from kdpipe.steps.tracked import tracked_run
from kdpipe.steps.workdir import claims
from kdpipe.teacher import cache as cached_teacher
from kdpipe.teacher import source as teacher
from kdpipe.tracking import run_notes, tags
from kdpipe.training.runtime import eval_loader, make_runtime, place_model, student_views

log = logging.getLogger("kdpipe")


@claims(EVALUATE_TEACHER)
def evaluate_teacher(params: Params) -> dict[str, Any]:
    """Load the teacher (or train one for the embedded demo), check its classes, measure it."""
    runtime = make_runtime(params.runtime)
    data = load_prepared(params.paths.prepared, expect=params.data.model_dump(), progress_mode=params.runtime.progress)
    out = Path(params.paths.teacher)
    lineage = {tags.DATA_SHA256: data.sha256, tags.TEACHER_SOURCE: params.teacher.source}
    with tracked_run(params, EVALUATE_TEACHER, lineage) as run:
        model, arch, version = teacher.resolve(
            params,
            data,
            runtime,
            on_epoch=lambda rec: run.log_metrics(
                {f"{tags.TEACHER_TRAIN_PREFIX}{k}": v for k, v in rec.items() if k != "epoch"}, rec["epoch"]
            ),
        )
        run.set_tags({**teacher.lineage(params), tags.DEVICE: str(runtime.device)})
        model = place_model(model, runtime)
        logits = predict_logits(model, eval_loader(data, "test", runtime))
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


@claims(TEACHER_CACHE)
def fill_teacher_cache(params: Params, world_size: int = 1) -> dict[str, Any]:
    """Record the teacher's outputs for every view the distill step will train on (each of ``world_size``
    ranks' shard), so that distill replays them; no MLflow run, the cache is a cache."""
    runtime = make_runtime(params.runtime)
    data = load_prepared(params.paths.prepared, expect=params.data.model_dump(), progress_mode=params.runtime.progress)
    return cached_teacher.fill(
        params,
        data,
        place_model(teacher.load(params, data), runtime),
        teacher.stored_sha256(params),
        lambda rank: student_views(data, params, runtime, rank, world_size),
        world_size,
        runtime,
    )
