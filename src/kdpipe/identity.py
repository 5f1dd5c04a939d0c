"""What makes two runs, teachers, teacher-cache keys or measurements "the same": defined once, here.

Every reuse kdpipe allows rests on one of these: a checkpoint resumes only under its run's
:func:`student_fingerprint`, a trained teacher is reused only under its :func:`teacher_fingerprint`, a
teacher-cache directory is named by its :func:`cache_key`, and a study keeps a finished run while its
:func:`run_fingerprint` and :func:`measurement` hold. The digests are stored (in checkpoints, model files,
cache directory names, study results), so what enters them changes only on purpose: any change turns every
stored one into a miss. ``tests/test_identity.py`` pins their values.

Each function is pure and takes the params sections it reads; ``data`` is anything with a prepared data set's
``sha256`` and ``manifest`` (:class:`kdpipe.data.prepared.PreparedData`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Protocol

from kdpipe.config import (
    CacheConfig,
    DataConfig,
    ExportConfig,
    MethodConfig,
    StudentConfig,
    StudentTrainConfig,
    TeacherConfig,
    ValidateConfig,
)
from kdpipe.config.section import Section
from kdpipe.infra.files import fingerprint


class Prepared(Protocol):
    """What an identity reads of a prepared data set: its content hash and its manifest (the flips)."""

    @property
    def sha256(self) -> str: ...

    @property
    def manifest(self) -> dict[str, Any]: ...

    @property
    def view_scheme(self) -> str | None: ...

    @property
    def image_size(self) -> int: ...


# Sections as identities see them.

# Keys added to a section after digests of it were stored: left out while at their default, so the digests
# stored before them (trained teachers, study results) stay valid; set to anything else, they count.
ADDED_KEYS: dict[str, tuple[str, ...]] = {
    "data": (
        "split",
        "val_fraction",
        "test_fraction",
        "group_by",
        "channels",
        "on_bad_image",
        "max_bad_fraction",
        "resize",
        "store",
        "in_memory_max_gb",
        "stored_size",
    ),
    "teacher": ("feature_layer", "classes", "preprocess", "trust_pickle"),
    "student": ("init",),
}


def section_identity(name: str, section: Section, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A params section as a digest reads it: its values, less ``exclude`` and the :data:`ADDED_KEYS` at default."""
    defaults = type(section)()
    left_out = set(exclude) | {k for k in ADDED_KEYS.get(name, ()) if getattr(section, k) == getattr(defaults, k)}
    return section.model_dump(mode="json", exclude=left_out)


# The views a student trains on.


def view_seed(train: StudentTrainConfig) -> int:
    """The seed of the student's views (order, crops, flips): ``train.view_seed``, else ``train.seed``."""
    return train.seed if train.view_seed is None else train.view_seed


def transfer_seed(data: DataConfig, train: StudentTrainConfig) -> int:
    """The seed that draws the student's transfer set (``train.subset``): ``train.subset_seed``, else ``data.seed``."""
    return data.seed if train.subset_seed is None else train.subset_seed


def replayed_views(data: DataConfig, train: StudentTrainConfig) -> dict[str, Any]:
    """What params decide of the views a run's teacher outputs are recorded for: their seed, the epochs, the
    batch size and the transfer set. Runs of one study that agree on it (and on the teacher) replay one cache key."""
    return {
        "view_seed": view_seed(train),
        "epochs": train.epochs,
        "batch_size": train.batch_size,
        "subset": train.subset,
        "sample_seed": transfer_seed(data, train),
        **({} if train.subset_excludes is None else {"sample_excluding": train.subset_excludes}),
    }


def training_views(data_cfg: DataConfig, data: Prepared) -> dict[str, Any]:
    """What decides the augmented images a model trains on beyond the data's sha256: the crop padding, the flips
    and the seed that samples a transfer set (``data.seed``; a student's own ``train.subset_seed`` is in
    :func:`train_identity`)."""
    return {"crop_padding": data_cfg.crop_padding, "hflip": bool(data.manifest["hflip"]), "sample_seed": data_cfg.seed}


# A student's training.


def train_identity(train: StudentTrainConfig) -> dict[str, Any]:
    """What decides training. ``subset_seed`` and ``subset_excludes`` left null (as before the keys existed) are
    left out, so checkpoints and study results from before them stay valid."""
    unset = {k for k in ("subset_seed", "subset_excludes") if getattr(train, k) is None}
    return train.model_dump(mode="json", exclude=unset or None)


def method_identity(method: MethodConfig, cache: CacheConfig) -> dict[str, Any]:
    """The settings of the method a run trains. Another method's settings change nothing, so tuning kd keeps every
    finished srd run; the cache mode changes no result (a float32 replay is exact) and is left out; the cache's
    dtype can, and is in (for a method with settings: every one with a teacher)."""
    section = method.section()
    if section is None:
        return {"name": method.name}
    return {"name": method.name, method.name: section.model_dump(mode="json"), "cache_dtype": cache.dtype}


def _check_init(student: StudentConfig, init_sha256: str | None) -> None:
    if (student.init is None) != (init_sha256 is None):
        raise ValueError("a student identity needs the sha256 of student.init's bytes exactly when it is set")


def student_fingerprint(
    *,
    student: StudentConfig,
    method: MethodConfig,
    cache: CacheConfig,
    train: StudentTrainConfig,
    data_cfg: DataConfig,
    data: Prepared,
    world_size: int,
    init_sha256: str | None = None,
) -> str:
    """A distill run's checkpoint: resumed only by a run with the same student, method, training, data, views and
    world size (the global batch is split over the ranks), and starting weights (``student.init``: their bytes)."""
    _check_init(student, init_sha256)
    return fingerprint(
        "student",
        student.arch,
        method_identity(method, cache),
        train_identity(train),
        data.sha256,
        world_size,
        training_views(data_cfg, data),
        *([] if init_sha256 is None else [{"init_sha256": init_sha256}]),
    )


def run_fingerprint(
    *,
    data: DataConfig,
    teacher: TeacherConfig,
    student: StudentConfig,
    method: MethodConfig,
    cache: CacheConfig,
    train: StudentTrainConfig,
    init_sha256: str | None = None,
) -> str:
    """What decides a study run's result: data (not where its raw files lie, nor how many processes read them),
    teacher, student (its starting weights by their bytes' sha256, not by where they lie), the method's own settings
    and the training budget; not where or how it ran, nor another method's settings."""
    _check_init(student, init_sha256)
    init = {} if init_sha256 is None else {"init_sha256": init_sha256}
    return fingerprint(
        {
            "data": section_identity("data", data, frozenset({"root", "workers"})),  # not how fast it was prepared
            "teacher": section_identity("teacher", teacher),
            "student": {**section_identity("student", student, frozenset({"init"})), **init},
            "method": method_identity(method, cache),
            "train": train_identity(train),
        }
    )


def measurement(validate: ValidateConfig, export: ExportConfig) -> dict[str, Any]:
    """What decides a finished run's or teacher's measurements beyond its training: the corruption suite and the
    int8 calibration. Measured with other settings, it is measured again (nothing retrains)."""
    return {
        "corruptions": validate.corruptions,
        "corruption_seed": validate.corruption_seed,
        "int8_calibration": export.calibration_size if export.enabled else None,
    }


# A teacher, and the outputs it gives for a student's views.


@dataclass(frozen=True)
class TeacherIdentity:
    """How a teacher is read and fed, beyond its weights: room for what the next teacher formats, feature layers,
    preprocessings and view schemes will set. Each default is what kdpipe does today; a field at its default
    enters no digest, so every digest of today's teachers (and of the caches and runs keyed by them) stands."""

    file_format: str = "kdpipe"
    """How the weights are stored: kdpipe's ``model.pt`` (architecture name, classes, channels, state dict)."""
    feature_layer: str = "pooled"
    """The features distilled from: the pooled penultimate ones of ``forward_with_features``."""
    preprocessing: str = "data"
    """What the teacher's input is: the prepared data's images, normalised by its manifest's mean and std."""
    view_scheme: str = "pad-crop-flip"
    """How training views are made: random crops of the image padded by ``data.crop_padding``, and flips."""
    class_order: str = "data"
    """Which of the teacher's logits answer for each data class: the data's own order."""

    def digest_fields(self) -> dict[str, str]:
        """The fields set to other than today's value: only these enter a digest."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}


TODAYS_TEACHER = TeacherIdentity()


def teacher_fingerprint(
    teacher: TeacherConfig, data_cfg: DataConfig, data: Prepared, how: TeacherIdentity = TODAYS_TEACHER
) -> str:
    """A teacher that ``teacher.source: train`` trains here: reused (and resumed) only with the same teacher
    section, data and views. Any teacher, whatever its source, is recorded under it."""
    extra = how.digest_fields()
    views = training_views(data_cfg, data)
    return fingerprint("teacher", section_identity("teacher", teacher), data.sha256, views, *([extra] if extra else []))


def trained_teacher_version(digest: str) -> str:
    """The version a teacher trained here is recorded and tagged under."""
    return f"train:{digest}"


def file_teacher_version(file_sha256: str) -> str:
    """The version a teacher read from a file is recorded and tagged under: its bytes."""
    return f"sha256:{file_sha256[:16]}"


def cache_key(
    *,
    teacher_sha256: str,
    data: Prepared,
    data_cfg: DataConfig,
    train: StudentTrainConfig,
    cache: CacheConfig,
    world_size: int,
    device_type: str,
    amp: bool,
    channels_last: bool,
    how: TeacherIdentity = TODAYS_TEACHER,
) -> dict[str, Any]:
    """Everything that decides the cached teacher outputs; :func:`cache_directory` names the cache's directory by it.
    The device type is in it because the in-memory loader draws crops and flips from a generator on its device (CPU
    and CUDA draw differently from one seed), the precision and memory format because they change the teacher's
    output. Streamed data names its view scheme (per-image boxes, not a stream) and the training size its crops are
    resized to; the in-memory key is as it was before the store existed.
    """
    streamed = {"views": data.view_scheme, "image_size": data.image_size} if data.view_scheme else {}
    return {
        "teacher_sha256": teacher_sha256,
        "data_sha256": data.sha256,
        **replayed_views(data_cfg, train),
        "crop_padding": data_cfg.crop_padding,
        "hflip": bool(data.manifest["hflip"]),
        **streamed,
        "world_size": world_size,
        "device": device_type,
        "amp": amp,
        "channels_last": channels_last,
        "dtype": cache.dtype,
        **how.digest_fields(),
    }


def cache_directory(key: dict[str, Any]) -> str:
    """The name of a cache key's directory under ``paths.teacher_cache``."""
    return fingerprint(key)[:16]
