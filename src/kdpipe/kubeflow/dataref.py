"""The prepared data set as a Kubeflow Dataset artifact: its files, or a reference to where they live.

A small data set travels as the artifact itself, copied between steps by Kubeflow. One too large
to copy stays where it is, and the artifact holds its manifest plus a reference in one of the
forms of :mod:`kdpipe.data.references` (``""``: no reference, the artifact is the data).

Readers check what they fetch against the sha256 the artifact recorded, so a reference that moved
under a run is an error, never silently different data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kdpipe.config import Params
from kdpipe.data.prepared import MANIFEST_FILE, data_files
from kdpipe.data.references import DataRef, fetch, parse, s3_client, split_s3, storage_error
from kdpipe.infra.errors import DataError
from kdpipe.infra.files import atomic_write_text
from kdpipe.kubeflow.artifacts import ArtifactLike
from kdpipe.kubeflow.params import with_paths

REFERENCE_FILE = "reference.json"
PrepareStep = Callable[..., dict[str, Any]]


def writable_dir(ref: DataRef, artifact_path: str, scratch: str) -> str:
    """Where prepare writes the data for this reference (a DVC revision is never written)."""
    if ref.kind == "dvc":
        raise DataError(f"data_ref {ref.uri}: a DVC revision is read, not prepared")
    if ref.kind == "path":
        return ref.location
    if ref.kind == "s3":
        return tempfile.mkdtemp(prefix="kdpipe-prepared-", dir=_ensure(Path(scratch)) if scratch else None)
    return artifact_path


def publish(ref: DataRef, prepared_dir: str) -> None:
    """Upload freshly prepared data to an S3 reference; other kinds are in place already."""
    if ref.kind != "s3":
        return
    bucket, prefix = split_s3(ref.location)
    client = s3_client()
    try:
        for name in data_files(read_manifest(Path(prepared_dir))):  # the manifest last
            client.upload_file(str(Path(prepared_dir) / name), bucket, f"{prefix}/{name}" if prefix else name)
    except Exception as exc:  # botocore raises many types; each is turned into one line
        raise storage_error(ref, exc) from None


def record(ref: DataRef, manifest: dict[str, Any], dataset: ArtifactLike) -> None:
    """Write the manifest (and the reference, if any) into the Dataset artifact and its metadata."""
    out = Path(dataset.path)
    out.mkdir(parents=True, exist_ok=True)
    if ref.kind != "artifact":
        atomic_write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
        atomic_write_text(out / REFERENCE_FILE, json.dumps({**asdict(ref), "uri": ref.uri}, indent=2) + "\n")
    dataset.metadata.update(
        {
            "sha256": manifest["sha256"],
            "source": manifest["source"],
            "classes": list(manifest["classes"]),
            "splits": dict(manifest["splits"]),
            "reference": ref.uri,
        }
    )


def materialize(ref: DataRef, cache_dir: str, expected_sha256: str | None = None) -> Path:
    """A local directory holding the referenced data, checked against ``expected_sha256``.

    Remote data is fetched once into ``cache_dir`` (a PVC shared by the run's steps, or scratch)
    under a name derived from the reference, and reused while its manifest still matches.
    """
    if ref.kind == "artifact":
        raise DataError("materialize needs a reference, not the artifact itself")
    if ref.kind == "path":
        local = Path(ref.location)
    else:
        key = hashlib.sha256(ref.uri.encode()).hexdigest()[:16]
        local = Path(cache_dir or tempfile.gettempdir()) / "kdpipe-data" / key
        current = local / MANIFEST_FILE
        if not (current.exists() and json.loads(current.read_text()).get("sha256") == expected_sha256):
            staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=_ensure(local.parent)))
            try:
                fetch(ref, staging, (MANIFEST_FILE,))
                fetch(ref, staging, data_files(read_manifest(staging))[:-1])  # the tensors or the store's shards
                shutil.rmtree(local, ignore_errors=True)
                os.replace(staging, local)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    found = read_manifest(local)["sha256"]
    if expected_sha256 is not None and found != expected_sha256:
        raise DataError(
            f"data_ref {ref.uri}: holds data {found[:12]}, but this run prepared {expected_sha256[:12]}; "
            "the reference changed during the run"
        )
    return local


def read_manifest(prepared_dir: Path) -> dict[str, Any]:
    path = prepared_dir / MANIFEST_FILE
    if not path.exists():
        raise DataError(f"{path}: missing; the reference holds no prepared data set")
    return dict(json.loads(path.read_text()))


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_dir(dataset_path: str, cache_dir: str) -> str:
    """The directory a step reads the prepared data from, given its Dataset artifact."""
    reference = Path(dataset_path) / REFERENCE_FILE
    if not reference.exists():
        return dataset_path
    ref = parse(json.loads(reference.read_text())["uri"])
    return str(materialize(ref, cache_dir, read_manifest(Path(dataset_path))["sha256"]))


def prepare(params: Params, data_ref: str, cache_dir: str, dataset: ArtifactLike, step: PrepareStep) -> dict[str, Any]:
    """The prepare step for a ``data_ref``; returns the data set's manifest.

    Into the Dataset artifact, onto a volume, or staged and uploaded to S3, ``step`` (the prepare
    step) prepares the data; a DVC revision is fetched and ``step`` verifies and records it. Every
    path goes through ``step``, so every path opens its MLflow run.
    """
    ref = parse(data_ref)
    if ref.kind == "dvc":
        manifest = step(with_paths(params, prepared=str(materialize(ref, cache_dir))), prepared_elsewhere=True)
    else:
        prepared = writable_dir(ref, dataset.path, cache_dir)
        manifest = step(with_paths(params, prepared=prepared))
        publish(ref, prepared)
    record(ref, manifest, dataset)
    return manifest
