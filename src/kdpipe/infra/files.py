"""The files the steps write: their names, the one atomic writer, and content digests.

Every file kdpipe writes itself goes through :func:`atomic_write_bytes` (temp file, fsync, rename),
so a crash or a full disk leaves the previous file in place, never a half-written one. (Directories
that the PyTorchJob launch copies between volumes are copied as they are.) Files with a format of
their own name themselves beside it: ``model.pt`` (model_file), ``manifest.json`` and ``splits.pt``
(data.prepared), ``last.pt`` (engine), ``reference.json`` (kubeflow.dataref).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from kdpipe.infra.errors import ForeignFileError, WriteError

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
DECISION_FILE = "decision.json"
DETAILS_FILE = "details.json"
PREDICTIONS_FILE = "predictions.pt"
REPORT_FILE = "report.md"
MODEL_RECORD_FILE = "mlflow_model.json"  # where distill logged the student in MLflow
PROMOTION_FILE = "promotion.json"
LEARNING_CURVES_FILE = "learning_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
CORRUPTION_HEATMAP_FILE = "corruption_heatmap.png"
PARAMS_FILE = "params.yaml"
TEACHER_DESCRIPTOR_FILE = "teacher.json"  # how a teacher stored in its own form is read (teacher/stored.py)
FILE_OVERHEAD = 64 * 1024  # a saved file's pickle records, history and metadata, beyond its tensors
ONNX_FILES = {"student_onnx": "student.onnx", "student_int8_onnx": "student_int8.onnx", "teacher_onnx": "teacher.onnx"}
# OpenVINO IR: the graph (.xml) and its weights (.bin) beside it, both hashed in metrics.json.
OPENVINO_FILES = {
    "student_openvino": "student_openvino.xml",
    "student_openvino_weights": "student_openvino.bin",
    "student_openvino_int8": "student_openvino_int8.xml",
    "student_openvino_int8_weights": "student_openvino_int8.bin",
}

_WRITE_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def write_cause(exc: OSError) -> str:
    """Why a write failed, in words: no space, read-only, permission, else the system's own text."""
    return _WRITE_CAUSES.get(exc.errno or 0, exc.strerror or type(exc).__name__)


def write_failure(path: Path, exc: OSError) -> WriteError:
    """The one-line error for an OSError met while writing ``path``: the cause in words, and what is left."""
    cause = write_cause(exc)
    kept = "the previous file is intact" if Path(path).exists() else "nothing was written there"
    return WriteError(f"{path}: cannot write ({cause}); {kept}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write, fsync, rename: readers see the old file or the new one, never a part."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise write_failure(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_failure(path, exc) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_tensors(path: Path) -> Any:
    """``torch.load`` of tensors and plain values only; anything else is a one-line error naming the file.

    A pickle that would construct other objects (run code) is refused by ``weights_only`` loading; the
    error says so and never suggests turning that protection off.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ForeignFileError(
            f"{path}: not a kdpipe file, or it holds code; kdpipe loads only tensors and plain "
            "values and will not load it"
        ) from None
    except (EOFError, RuntimeError, ValueError, OSError) as exc:
        size = Path(path).stat().st_size if Path(path).exists() else 0
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0].rstrip(".")
        reason = "the file is empty" if size == 0 else first[:200]
        raise ForeignFileError(f"{path}: not a kdpipe file, or truncated ({reason})") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A file written by :func:`atomic_torch_save`; tensors and plain values only."""
    state = load_tensors(path)
    if not isinstance(state, dict):
        raise ForeignFileError(f"{path}: not a kdpipe file (it holds a {type(state).__name__}, not a dict)")
    return state


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text()))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows as CSV with the union of their keys as columns, in order of first appearance."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(*parts: Any) -> str:
    """A short digest of JSON-able values: what a checkpoint or a cached result was made from."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing ancestor: where a directory not made yet would be made."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def need_space(needs: Mapping[Path, int], what: str) -> None:
    """Refuse, before the work, when a file system has less room than ``needs`` (bytes per directory) adds up to."""
    per_device: dict[int, tuple[Path, int]] = {}
    for directory, nbytes in needs.items():
        device = os.stat(existing_ancestor(directory)).st_dev
        first, total = per_device.get(device, (directory, 0))
        per_device[device] = (first, total + nbytes)
    for directory, total in per_device.values():
        free = shutil.disk_usage(existing_ancestor(directory)).free
        if free < total:
            raise WriteError(
                f"{directory}: {free / 1e6:.2f} MB free, but the {what} need about {total / 1e6:.2f} MB; "
                "free space or point paths.* elsewhere (checked before any work, nothing was changed)"
            )


@contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """A fresh directory beside ``out_dir`` for the block to fill, swapped in when the block succeeds.

    A block that fails (a refused input, a full disk) leaves ``out_dir`` as it was and removes the staging.
    """
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as exc:
        raise write_failure(out_dir, exc) from None
    try:
        yield staging
        try:
            if out_dir.exists():
                retired = out_dir.with_name(f".{out_dir.name}.old")
                shutil.rmtree(retired, ignore_errors=True)
                os.replace(out_dir, retired)
                os.replace(staging, out_dir)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(staging, out_dir)
        except OSError as exc:
            raise write_failure(out_dir, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (no bytes copied); a copy where the two lie on different file systems."""
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, dst)
