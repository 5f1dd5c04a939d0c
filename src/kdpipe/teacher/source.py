"""Which teacher a run distils from: trained here for the demo, a checkpoint file, or a registry version.

:func:`resolve` turns ``teacher.source`` into a model, checks that it predicts the data's classes
from the data's channels, and stores it at ``paths.teacher`` with the version it resolved to, so
every later step (and every MLflow run) loads and names the same teacher.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from kdpipe import identity
from kdpipe.config import Params
from kdpipe.data.prepared import PreparedData
from kdpipe.distill import create_distiller
from kdpipe.infra.errors import KdpipeError, TeacherMismatchError
from kdpipe.infra.files import file_sha256, need_space
from kdpipe.models import FeatureClassifier, create_model
from kdpipe.models.file import MODEL_FILE, load_model, save_model
from kdpipe.tracking import registry, tags
from kdpipe.tracking.server import tracking_errors
from kdpipe.training.loop import TEACHER_CHECKPOINTS, EpochCallback, Runtime, train, training_space
from kdpipe.training.runtime import eval_loader, make_loader, place_model

log = logging.getLogger("kdpipe")

TRAIN = "train"


def check_classes(teacher_meta: dict[str, Any], data: PreparedData, source: str) -> None:
    """A teacher must predict exactly the data's classes, in order, from the data's channels."""
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


def _fingerprint(params: Params, data: PreparedData) -> str:
    return identity.teacher_fingerprint(params.teacher, params.data, data)


def _train(params: Params, data: PreparedData, runtime: Runtime, on_epoch: EpochCallback) -> FeatureClassifier:
    """Bootstrap the embedded demo's teacher: cross-entropy only, resumable from its checkpoint."""
    cfg = params.teacher.train
    torch.manual_seed(cfg.seed)
    teacher = create_model(params.teacher.arch, data.num_classes, data.in_channels, data.manifest["shape"][-1])
    teacher = place_model(teacher, runtime)
    distiller = create_distiller("scratch", teacher, None)
    checkpoints = Path(params.paths.checkpoints) / TEACHER_CHECKPOINTS
    need_space(training_space(distiller, checkpoints, Path(params.paths.teacher)), "teacher's checkpoint and model")
    train(
        distiller,
        make_loader(data, "train", cfg.batch_size, params, runtime, train=True, seed=cfg.seed, subset=cfg.subset),
        eval_loader(data, "val", runtime),
        cfg,
        runtime,
        checkpoints,
        resume=True,
        fingerprint=_fingerprint(params, data),
        on_epoch=on_epoch,
        label="teacher",
    )
    return teacher


def _from_registry(params: Params, source: str) -> tuple[FeatureClassifier, dict[str, Any], str]:
    """A teacher from the MLflow registry: the kdpipe checkpoint logged with that model version."""
    if not params.tracking.enabled:
        raise KdpipeError(
            f"teacher.source {source}: a registry teacher needs tracking.enabled (the registry at tracking.uri)"
        )
    with tracking_errors(params, f"fetching the teacher {source}"), tempfile.TemporaryDirectory() as tmp:
        path, mv = registry.fetch_checkpoint(registry.client(params.tracking.uri), source, Path(tmp))
        teacher, meta = load_model(path)
    return teacher, meta, f"{mv.name}/{mv.version}"


def resolve(
    params: Params, data: PreparedData, runtime: Runtime, on_epoch: EpochCallback
) -> tuple[FeatureClassifier, str, str]:
    """The teacher named by ``teacher.source``, stored at ``paths.teacher``; returns (model, arch, version).

    ``train`` reuses the stored teacher while its params and data are unchanged, else trains one
    (reporting each epoch to ``on_epoch``).
    """
    stored = Path(params.paths.teacher) / MODEL_FILE
    source = params.teacher.source
    wanted = _fingerprint(params, data)
    if source == TRAIN:
        version = identity.trained_teacher_version(wanted)
        if stored.exists():
            teacher, meta = load_model(stored)
            if meta["meta"].get("fingerprint") == wanted:
                log.info("evaluate_teacher: reusing the teacher in %s (same params and data)", stored)
                return teacher, meta["arch"], version
        teacher = _train(params, data, runtime, on_epoch)
        save_model(
            stored,
            teacher,
            params.teacher.arch,
            data.classes,
            data.in_channels,
            fingerprint=wanted,
            data_sha256=data.sha256,
            source=TRAIN,
            version=version,
        )
        return teacher, params.teacher.arch, version
    if source.startswith("models:/"):
        teacher, meta, version = _from_registry(params, source)
    else:
        teacher, meta = load_model(Path(source))
        version = identity.file_teacher_version(file_sha256(Path(source)))
    check_classes(meta, data, source)
    save_model(
        stored,
        teacher,
        meta["arch"],
        meta["classes"],
        meta["in_channels"],
        fingerprint=wanted,
        data_sha256=data.sha256,
        source=source,
        version=version,
    )
    return teacher, meta["arch"], version


def load(params: Params, data: PreparedData) -> FeatureClassifier:
    """The teacher that evaluate_teacher stored, checked against ``data`` and against ``teacher.source``.

    A later step never distils from, or measures, another teacher than the one its params name:
    the stored teacher must have been resolved from the same source (and, for ``train``, with the
    same teacher params and data; for a file, from the same bytes).
    """
    path = Path(params.paths.teacher) / MODEL_FILE
    if not path.exists():
        raise KdpipeError(f"{path}: no teacher stored; run `kdpipe teacher` first")
    teacher, meta = load_model(path)
    source, recorded = params.teacher.source, meta["meta"]
    if source == TRAIN:
        expected: str | None = identity.trained_teacher_version(_fingerprint(params, data))
    elif source.startswith("models:/"):
        expected = None  # evaluate_teacher resolved the registry version once; its record names it
    elif Path(source).exists():
        expected = identity.file_teacher_version(file_sha256(Path(source)))
    else:
        raise KdpipeError(f"teacher.source: {source} not found")
    if recorded.get("source") != source or (expected is not None and recorded.get("version") != expected):
        raise TeacherMismatchError(
            f"teacher.source is {source!r}, but {path} holds the teacher resolved from {recorded.get('source')!r} "
            f"({recorded.get('version', 'no version')}); run `kdpipe teacher` with these params first, so the step "
            "uses the teacher its params name"
        )
    check_classes(meta, data, source)
    return teacher


def stored_sha256(params: Params) -> str:
    """The sha256 of the stored teacher (what a teacher cache is keyed by); empty when there is none."""
    path = Path(params.paths.teacher) / MODEL_FILE
    return file_sha256(path) if path.exists() else ""


def lineage(params: Params) -> dict[str, str]:
    """The teacher's source, resolved version and architecture, as evaluate_teacher recorded them."""
    path = Path(params.paths.teacher) / MODEL_FILE
    blob = load_model(path)[1] if path.exists() else {"meta": {}}
    meta = blob["meta"]
    return {
        tags.TEACHER_SOURCE: str(meta.get("source", params.teacher.source)),
        tags.TEACHER_VERSION: str(meta.get("version", "unknown")),
        tags.TEACHER_ARCH: str(blob.get("arch", params.teacher.arch)),
    }
