"""Where a student's starting weights come from (``student.init``): a weights file, or the one an MLflow model holds.

Resolved once per run, before training: the bytes' sha256 enters the student's identity (a checkpoint or a study
result made from other weights is not reused), the tensors are loaded by name and shape
(:func:`kdpipe.models.init_weights.load_matching`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdpipe.config.student import StudentConfig
from kdpipe.config.tracking import TrackingConfig
from kdpipe.infra.errors import ConfigError, KdpipeError
from kdpipe.infra.files import file_sha256
from kdpipe.models.init_weights import InitReport, read_state
from kdpipe.tracking.model_weights import download_weights, is_model_uri

INIT_REPORT_FILE = "student_init.json"


@dataclass(frozen=True)
class StudentInit:
    source: str
    sha256: str
    state: dict[str, torch.Tensor]


@contextmanager
def _local_file(init: str, tracking: TrackingConfig) -> Iterator[Path]:
    """The file ``init`` names, or the weights file of the MLflow model it names, downloaded for the block."""
    if not is_model_uri(init):
        path = Path(init)
        if not path.is_file():
            raise ConfigError(f"student.init: {path}: file not found")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="kdpipe-init-") as tmp:
        try:
            path = download_weights(init, tracking.uri, Path(tmp))
        except KdpipeError as exc:
            raise ConfigError(f"student.init: {exc}") from None
        yield path


def init_sha256(student: StudentConfig, tracking: TrackingConfig) -> str | None:
    """The sha256 of the weights' bytes ``student.init`` names, for identities; None when it is not set."""
    if student.init is None:
        return None
    with _local_file(student.init, tracking) as path:
        return file_sha256(path)


def resolve_init(student: StudentConfig, tracking: TrackingConfig) -> StudentInit | None:
    """The weights ``student.init`` names, with their sha256; None when it is not set."""
    if student.init is None:
        return None
    with _local_file(student.init, tracking) as path:
        try:
            return StudentInit(student.init, file_sha256(path), read_state(path))
        except KdpipeError as exc:
            raise ConfigError(f"student.init: {exc}") from None


def init_record(init: StudentInit, report: InitReport) -> dict[str, Any]:
    """What the run logs as ``student_init.json``: where the weights came from and which tensors they filled."""
    return {"source": init.source, "sha256": init.sha256, **report.to_dict()}
