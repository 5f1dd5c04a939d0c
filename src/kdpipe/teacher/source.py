"""Which teacher a run distils from: trained here for the demo, or the model a team already has.

:func:`resolve` turns ``teacher.source`` into a model: ``train``, a file (a kdpipe model, TorchScript, a
``torch.export`` program, a state dict with ``teacher.arch``: :mod:`~kdpipe.teacher.formats`) or an MLflow model
URI (:mod:`~kdpipe.teacher.mlflow_models`). It reads the teacher as params say (:mod:`~kdpipe.teacher.reading`:
classes, channels, input, features, checked on a batch), and only then stores it at ``paths.teacher`` in its own
form with a descriptor (:mod:`~kdpipe.teacher.stored`), so every later step (and every MLflow run) loads and
names the same teacher, and a refused one leaves what was stored untouched.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from kdpipe import identity
from kdpipe.config import Params
from kdpipe.data.prepared import PreparedData
from kdpipe.distill import create_distiller
from kdpipe.infra.errors import KdpipeError, TeacherMismatchError
from kdpipe.infra.files import file_sha256, need_space
from kdpipe.models import FeatureClassifier, create_model
from kdpipe.models.file import MODEL_FILE, load_model, save_model
from kdpipe.teacher import formats, mlflow_models, reading, stored
from kdpipe.tracking import tags
from kdpipe.tracking.server import tracking_errors
from kdpipe.training.loop import TEACHER_CHECKPOINTS, EpochCallback, Runtime, train, training_space
from kdpipe.training.runtime import eval_loader, make_loader, place_model

log = logging.getLogger("kdpipe")

TRAIN = "train"


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


def _image_size(params: Params, data: PreparedData) -> int:
    return params.teacher.preprocess.image_size or int(data.manifest["shape"][-1])


def _fetch(params: Params, data: PreparedData, tmp: Path) -> tuple[formats.Loaded, str]:
    """The teacher ``teacher.source`` names, loaded, and the version it resolves to."""
    source, cfg = params.teacher.source, params.teacher
    if mlflow_models.is_uri(source):
        with tracking_errors(params, f"fetching the teacher {source}"):
            fetched = mlflow_models.fetch(params.tracking, source, tmp)
        return mlflow_models.load(fetched, trust_pickle=cfg.trust_pickle), fetched.version
    path = Path(source)
    loaded = formats.load(path, arch=cfg.arch, image_size=_image_size(params, data), trust_pickle=cfg.trust_pickle)
    return loaded, identity.file_teacher_version(stored.payload_sha256(path))


def _descriptor(fmt: str, sha256: str, source: str, version: str, arch: str, read: reading.Read) -> stored.Descriptor:
    return stored.Descriptor(
        format=fmt,
        sha256=sha256,
        source=source,
        version=version,
        arch=arch,
        feature_layer=read.feature_layer,
        feature_dim=read.model.feature_dim,
        classes=read.classes,
        in_channels=read.in_channels,
        reading=read.reading,
    )


def resolve(
    params: Params, data: PreparedData, runtime: Runtime, on_epoch: EpochCallback
) -> tuple[FeatureClassifier, str, str]:
    """The teacher named by ``teacher.source``, stored at ``paths.teacher``; returns (model, arch, version).

    ``train`` reuses the stored teacher while its params and data are unchanged, else trains one
    (reporting each epoch to ``on_epoch``).
    """
    directory = Path(params.paths.teacher)
    model_file, source, wanted = directory / MODEL_FILE, params.teacher.source, _fingerprint(params, data)
    if source == TRAIN:
        version = identity.trained_teacher_version(wanted)
        reused = model_file.exists() and load_model(model_file)[1]["meta"].get("fingerprint") == wanted
        if reused:
            log.info("evaluate_teacher: reusing the teacher in %s (same params and data)", model_file)
        else:
            teacher = _train(params, data, runtime, on_epoch)
            save_model(
                model_file,
                teacher,
                params.teacher.arch,
                data.classes,
                data.in_channels,
                fingerprint=wanted,
                data_sha256=data.sha256,
                source=TRAIN,
                version=version,
            )
        loaded = formats.load(model_file, arch="", image_size=None, trust_pickle=False)
        read = reading.read(params, data, loaded, source)
        sha = file_sha256(model_file)
        stored.store(directory, _descriptor(stored.KDPIPE, sha, source, version, loaded.arch, read), None)
        return read.model, loaded.arch, version
    with tempfile.TemporaryDirectory(prefix="kdpipe-teacher-") as tmp:
        loaded, version = _fetch(params, data, Path(tmp))
        read = reading.read(params, data, loaded, source)  # every check, before anything is stored
        if loaded.format == stored.KDPIPE:
            assert isinstance(loaded.net, FeatureClassifier)
            save_model(
                model_file,
                loaded.net,
                loaded.arch,
                loaded.classes or read.classes,
                read.in_channels,
                fingerprint=wanted,
                data_sha256=data.sha256,
                source=source,
                version=version,
            )
            descriptor = _descriptor(stored.KDPIPE, file_sha256(model_file), source, version, loaded.arch, read)
            stored.store(directory, descriptor, None)
        else:
            sha = stored.payload_sha256(loaded.payload)
            stored.store(directory, _descriptor(loaded.format, sha, source, version, loaded.arch, read), loaded.payload)
    log.info("evaluate_teacher: %s (%s) stored in %s", source, loaded.format, directory)
    return read.model, loaded.arch or loaded.format, version


def _recorded(directory: Path) -> stored.Descriptor:
    """The stored teacher's descriptor; for a ``model.pt`` stored before descriptors, one made from its record."""
    descriptor = stored.read(directory)
    if descriptor is not None:
        return descriptor
    path = directory / MODEL_FILE
    if not path.exists():
        raise KdpipeError(f"{path}: no teacher stored; run `kdpipe teacher` first")
    meta = load_model(path)[1]
    return stored.Descriptor(
        format=stored.KDPIPE,
        sha256=file_sha256(path),
        source=str(meta["meta"].get("source", "")),
        version=str(meta["meta"].get("version", "no version")),
        arch=meta["arch"],
        feature_layer=reading.OWN,
        feature_dim=0,
        classes=list(meta["classes"]),
        in_channels=int(meta["in_channels"]),
    )


def load(params: Params, data: PreparedData) -> FeatureClassifier:
    """The teacher that evaluate_teacher stored, checked against ``data`` and against ``teacher.source``.

    A later step never distils from, or measures, another teacher than the one its params name:
    the stored teacher must have been resolved from the same source (and, for ``train``, with the
    same teacher params and data; for a file, from the same bytes), and be read the same way.
    """
    directory = Path(params.paths.teacher)
    recorded = _recorded(directory)
    source = params.teacher.source
    if source == TRAIN:
        expected: str | None = identity.trained_teacher_version(_fingerprint(params, data))
    elif mlflow_models.is_uri(source):
        expected = None  # evaluate_teacher resolved the MLflow version once; its record names it
    elif Path(source).exists():
        expected = identity.file_teacher_version(stored.payload_sha256(Path(source)))
    else:
        raise KdpipeError(f"teacher.source: {source} not found")
    if recorded.source != source or (expected is not None and recorded.version != expected):
        raise TeacherMismatchError(
            f"teacher.source is {source!r}, but {directory} holds the teacher resolved from {recorded.source!r} "
            f"({recorded.version}); run `kdpipe teacher` with these params first, so the step "
            "uses the teacher its params name"
        )
    payload = directory / recorded.payload
    if not payload.exists() or stored.payload_sha256(payload) != recorded.sha256:
        raise KdpipeError(f"{payload}: missing or changed since `kdpipe teacher` stored it; run `kdpipe teacher`")
    cfg = params.teacher
    loaded = formats.load(
        payload, arch=recorded.arch, image_size=_image_size(params, data), trust_pickle=cfg.trust_pickle
    )
    if loaded.classes is None:  # the names came with the MLflow model (a tag, classes.txt), not in its weights
        loaded = replace(loaded, classes=recorded.classes)
    read = reading.read(params, data, loaded, source)
    if stored.read(directory) is not None and (read.reading, read.feature_layer) != (
        recorded.reading,
        recorded.feature_layer,
    ):
        raise TeacherMismatchError(
            f"{directory}: the teacher was stored to be read with {recorded.reading or 'the defaults'} and feature "
            f"layer {recorded.feature_layer}; teacher.* now says {read.reading or 'the defaults'} and "
            f"{read.feature_layer}; run `kdpipe teacher` with these params first"
        )
    return read.model


def stored_sha256(params: Params) -> str:
    """The sha256 of the stored teacher (what a teacher cache is keyed by); empty when there is none."""
    directory = Path(params.paths.teacher)
    descriptor = stored.read(directory)
    if descriptor is not None:
        return descriptor.sha256
    path = directory / MODEL_FILE
    return file_sha256(path) if path.exists() else ""


def lineage(params: Params) -> dict[str, str]:
    """The teacher's source, resolved version, architecture, format, feature layer and bytes, as evaluate_teacher
    recorded them."""
    directory = Path(params.paths.teacher)
    if stored.read(directory) is None and not (directory / MODEL_FILE).exists():
        return {
            tags.TEACHER_SOURCE: params.teacher.source,
            tags.TEACHER_VERSION: "unknown",
            tags.TEACHER_ARCH: params.teacher.arch,
        }
    recorded = _recorded(directory)
    return {
        tags.TEACHER_SOURCE: recorded.source or params.teacher.source,
        tags.TEACHER_VERSION: recorded.version,
        tags.TEACHER_ARCH: recorded.arch or recorded.format,
        tags.TEACHER_FORMAT: recorded.format,
        tags.TEACHER_FEATURE_LAYER: recorded.feature_layer,
        tags.TEACHER_SHA256: recorded.sha256,
    }
