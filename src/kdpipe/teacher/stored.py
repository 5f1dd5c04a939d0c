"""The teacher at ``paths.teacher``: the model as it came, and a small descriptor of how it is read.

A TorchScript file, a ``torch.export`` program, a state dict or an MLflow model folder cannot be re-saved as
kdpipe's ``model.pt`` (weights plus an architecture name), so each is stored in its own form beside
``teacher.json``: its format, the payload's file name and sha256, where it came from and the version it
resolved to, its feature layer and size, its classes and channels, and the preprocessing and class order it
is fed with. Every later step rebuilds the teacher from these two, and :func:`identity_of` turns the
descriptor into the :class:`~kdpipe.identity.TeacherIdentity` that teacher-cache keys carry. A teacher kdpipe
trained, or any kdpipe model file, keeps being stored as ``model.pt``, byte for byte as before.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdpipe.identity import TODAYS_TEACHER, TeacherIdentity
from kdpipe.infra import files
from kdpipe.infra.errors import KdpipeError
from kdpipe.models.file import MODEL_FILE

DESCRIPTOR = files.TEACHER_DESCRIPTOR_FILE
KDPIPE = "kdpipe"
# Each format's payload name under paths.teacher (an MLflow model is a folder).
PAYLOADS = {
    KDPIPE: MODEL_FILE,
    "torchscript": "torchscript.pt",
    "pt2": "program.pt2",
    "state_dict": "state_dict.pt",
    "mlflow-pickle": "mlflow_model",
    "mlflow-pt2": "mlflow_model",
}


@dataclass(frozen=True)
class Descriptor:
    """How the stored teacher is read; ``reading`` is what params decided of it (checked by every later step)."""

    format: str
    sha256: str
    source: str
    version: str
    arch: str
    feature_layer: str
    """``pooled``: the model's own pooled features (kdpipe, timm); ``none``: no features; else the layer tapped."""
    feature_dim: int
    classes: list[str]
    in_channels: int
    reading: dict[str, Any] = field(default_factory=dict)
    """``preprocess`` (when not the default) and ``order`` (the teacher's index of each data class, when remapped)."""

    @property
    def payload(self) -> str:
        return PAYLOADS[self.format]


def payload_sha256(path: Path) -> str:
    """The bytes that make the teacher: a file's sha256; for an MLflow folder, its serialised model's."""
    if path.is_dir():
        data = sorted(p for p in (path / "data").glob("model.*") if p.is_file())
        if not data:
            raise KdpipeError(f"{path}: an MLflow pytorch model without data/model.pth or data/model.pt2")
        return files.file_sha256(data[0])
    return files.file_sha256(path)


def read(directory: Path) -> Descriptor | None:
    """The descriptor at ``directory``; None when none was written (a teacher stored before descriptors)."""
    path = directory / DESCRIPTOR
    if not path.exists():
        return None
    try:
        return Descriptor(**files.read_json(path))
    except (TypeError, ValueError) as exc:
        raise KdpipeError(f"{path}: not a teacher descriptor ({exc}); run `kdpipe teacher`") from None


def _place(payload: Path, target: Path) -> None:
    """Copy ``payload`` (file or folder) to ``target`` through a temporary name, so a crash leaves no part."""
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=target.parent))
    try:
        staged = tmp / target.name
        if payload.is_dir():
            shutil.copytree(payload, staged)
        else:
            shutil.copy2(payload, staged)
        if target.is_dir():
            shutil.rmtree(target)
        staged.replace(target)
    except OSError as exc:
        raise files.write_failure(target, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def store(directory: Path, descriptor: Descriptor, payload: Path | None) -> None:
    """Put the teacher at ``directory``: ``payload`` copied as it is (None: ``model.pt`` is already written),
    then the descriptor; the payloads of other formats stored there before are removed."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / descriptor.payload
    if payload is not None:
        _place(payload, target)
    for name in set(PAYLOADS.values()) - {descriptor.payload}:
        stale = directory / name
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    files.write_json(directory / DESCRIPTOR, asdict(descriptor))


def identity_of(descriptor: Descriptor | None) -> TeacherIdentity:
    """What, beyond the payload's bytes, decides the teacher's outputs: today's defaults for a kdpipe model read
    as before, so its cache keys stay those stored before."""
    if descriptor is None:
        return TODAYS_TEACHER
    reading = descriptor.reading
    return TeacherIdentity(
        file_format=":".join(
            part for part in (descriptor.format, descriptor.arch) if part and descriptor.format != KDPIPE
        )
        or KDPIPE,
        feature_layer=descriptor.feature_layer,
        preprocessing=json.dumps(reading["preprocess"], sort_keys=True)
        if reading.get("preprocess")
        else TODAYS_TEACHER.preprocessing,
        class_order=json.dumps(reading["order"]) if reading.get("order") else TODAYS_TEACHER.class_order,
    )
